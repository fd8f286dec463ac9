-- intake_take: take the due jobs among a batch the way arq's start_jobs takes one.
--
-- KEYS[1]    the arq queue zset (job id -> due time, epoch ms)
-- KEYS[2]    this worker's taken zset <queue>:taken:<me> (job id -> end of its lease, ms)
-- KEYS[2+i]  arq's in-progress key of the i-th job (arq:in-progress:<ARGV[5+i]>)
-- ARGV[1]    now, epoch ms
-- ARGV[2]    lease (in-progress TTL) in ms
-- ARGV[3]    me: this worker's id (the value of the in-progress keys it sets)
-- ARGV[4]    limit: take at most this many jobs (the worker's headroom); the rest stay due
-- ARGV[5]    due by, epoch ms (at most now): a worker above the cluster average gives those
--            below it the first pick of the freshest jobs
-- ARGV[5+i]  the i-th job id
--
-- Returns: the ids of the jobs taken, in batch order (possibly none). A job is taken when
-- its score is due by ARGV[5] and its in-progress key was free (SET NX PX lease, value me);
-- its score then moves to now + lease and it is recorded in KEYS[2], so that reaping this
-- worker if it dies gives it back at once (intake_release) instead of after the lease. Jobs
-- not in the queue, not due by ARGV[5], in progress elsewhere, or beyond the limit are left
-- as they are.
--
-- The zsets are written in one variadic ZADD each: a ZSCORE per job read and a SET per job
-- taken, and four commands per batch (ZMSCORE would read the scores in one, but needs Redis
-- 6.2).
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[4])
local due_by = tonumber(ARGV[5])
local out = {}
local until_ms = now + lease
local scored = {}
for i = 6, #ARGV do
  if #out >= limit then break end
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= due_by
     and redis.call('SET', KEYS[i - 3], ARGV[3], 'NX', 'PX', lease) then
    out[#out + 1] = id
    scored[#scored + 1] = until_ms
    scored[#scored + 1] = id
  end
end
if #out > 0 then
  -- Hidden from every reader of due jobs until the lease ends (a visibility timeout): other
  -- workers do not try them again on every poll while this batch runs.
  redis.call('ZADD', KEYS[1], 'XX', unpack(scored))
  redis.call('ZADD', KEYS[2], unpack(scored))
  -- Entries whose lease has ended are stale (their in-progress keys are gone): drop them.
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('PEXPIRE', KEYS[2], lease)
end
return out
