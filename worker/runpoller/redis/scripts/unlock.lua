-- unlock: release a fenced lock only if it still holds this holder's token.
--
-- KEYS[1]  the lock string (e.g. <prefix>:orphans:lock), set with SET NX PX <token>
-- ARGV[1]  the holder's token
--
-- Returns:
--   1  deleted: the lock was still ours
--   0  not deleted: it expired, or another holder's token is there now
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
