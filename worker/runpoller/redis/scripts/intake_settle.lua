-- intake_settle: settle a taken batch: finished jobs leave, deferred ones get their new score.
--
-- KEYS[1]    the arq queue zset
-- KEYS[2..]  the keys to delete: the in-progress, job and retry keys of each finished job,
--            then the in-progress key of each deferred job
-- ARGV[1]    n: the number of finished job ids
-- ARGV[2..1+n]  the finished job ids (removed from the queue)
-- ARGV[2+n..]   pairs of (deferred job id, new score in epoch ms), rescheduled if queued
--
-- Returns: n, the number of finished jobs.
local n = tonumber(ARGV[1])
local done, deferred = {}, {}
for i = 2, 1 + n do
  done[#done + 1] = ARGV[i]
end
for i = 2 + n, #ARGV, 2 do
  deferred[#deferred + 1] = ARGV[i + 1]
  deferred[#deferred + 1] = ARGV[i]
end
if #done > 0 then redis.call('ZREM', KEYS[1], unpack(done)) end
if #deferred > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(deferred)) end
if #KEYS > 1 then redis.call('DEL', unpack(KEYS, 2)) end
return #done
