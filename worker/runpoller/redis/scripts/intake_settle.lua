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
--
-- One GET per job (the fence); the zsets and keys are written in one variadic command each.
local n = tonumber(ARGV[2])
local settled = 0
local function mine(key)
  local holder = redis.call('GET', key)
  return (not holder) or holder == ARGV[1]
end
local all, finished, gone, rescored = {}, {}, {}, {}
for i = 1, n do
  local id = ARGV[2 + i]
  local base = 3 + (i - 1) * 3
  all[#all + 1] = id
  if mine(KEYS[base]) then
    finished[#finished + 1] = id
    gone[#gone + 1] = KEYS[base]
    gone[#gone + 1] = KEYS[base + 1]
    gone[#gone + 1] = KEYS[base + 2]
    settled = settled + 1
  end
end
local k = 3 + n * 3
for i = 3 + n, #ARGV, 2 do
  local id = ARGV[i]
  all[#all + 1] = id
  if mine(KEYS[k]) then
    rescored[#rescored + 1] = ARGV[i + 1]
    rescored[#rescored + 1] = id
    gone[#gone + 1] = KEYS[k]
    settled = settled + 1
  end
  k = k + 1
end
if #all > 0 then redis.call('ZREM', KEYS[2], unpack(all)) end
if #finished > 0 then redis.call('ZREM', KEYS[1], unpack(finished)) end
if #rescored > 0 then redis.call('ZADD', KEYS[1], 'XX', unpack(rescored)) end
if #gone > 0 then redis.call('DEL', unpack(gone)) end
return settled
