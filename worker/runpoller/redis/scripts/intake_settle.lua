-- intake_settle: settle a taken batch: finished jobs leave, deferred ones get their new score.
--
-- KEYS[1]    the arq queue zset
-- KEYS[2]    this worker's taken zset <queue>:taken:<me>
-- KEYS[3..]  the in-progress, job and retry keys of each finished job (3 per job), then the
--            in-progress key of each deferred job
-- ARGV[1]    me: this worker's id (the value intake_take gave the in-progress keys)
-- ARGV[2]    n: the number of finished job ids
-- ARGV[3..2+n]  the finished job ids (removed from the queue)
-- ARGV[3+n..]   pairs of (deferred job id, new score in epoch ms), rescheduled if queued
--
-- Fenced: a job whose in-progress key another worker holds now (this worker was presumed
-- dead, reaping gave the job back and it was taken again) is left to that worker. A job whose
-- key is gone (the lease ended, no one took it since) is settled as if still held.
--
-- Returns: the number of jobs settled (finished or deferred) that were still this worker's;
-- fewer than given means some were taken over meanwhile.
local n = tonumber(ARGV[2])
local settled = 0
local function mine(key)
  local holder = redis.call('GET', key)
  return (not holder) or holder == ARGV[1]
end
for i = 1, n do
  local id = ARGV[2 + i]
  local base = 3 + (i - 1) * 3
  redis.call('ZREM', KEYS[2], id)
  if mine(KEYS[base]) then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', KEYS[base], KEYS[base + 1], KEYS[base + 2])
    settled = settled + 1
  end
end
local k = 3 + n * 3
for i = 3 + n, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('ZREM', KEYS[2], id)
  if mine(KEYS[k]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 1], id)
    redis.call('DEL', KEYS[k])
    settled = settled + 1
  end
  k = k + 1
end
return settled
