-- intake_release: give back the jobs a dead worker took and never settled, due at once.
--
-- KEYS[1]  the arq queue zset
-- KEYS[2]  the dead worker's taken zset <queue>:taken:<wid> (job id -> end of its lease, ms)
-- KEYS[3]  the dead worker's heartbeat string <prefix>:worker:<wid>
-- ARGV[1]  wid: the dead worker's id (the value of the in-progress keys it set)
-- ARGV[2]  arq's in-progress key prefix (arq:in-progress:)
-- ARGV[3]  now, epoch ms
--
-- Not declared: the in-progress keys, ARGV[2] .. id for each id in KEYS[2]. They are the
-- members of the taken zset at the moment the script runs, so they are read here, atomically
-- with the check that each is still held by wid, not passed in.
--
-- Returns:
--   n   jobs given back (their in-progress key, still wid's, deleted; their score now, if
--       still queued); KEYS[2] is gone. Jobs taken again by another worker since are left.
--  -1   refused, nothing written: the heartbeat lives (the worker is late, not dead)
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[3], '+inf')
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
    n = n + 1
  end
end
redis.call('DEL', KEYS[2])
return n
