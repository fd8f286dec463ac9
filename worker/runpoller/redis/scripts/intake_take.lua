-- intake_take: take the due jobs among a batch the way arq's start_jobs takes one.
--
-- KEYS[1]    the arq queue zset (job id -> due time, epoch ms)
-- KEYS[1+i]  arq's in-progress key of the i-th job (arq:in-progress:<ARGV[2+i]>)
-- ARGV[1]    now, epoch ms
-- ARGV[2]    lease (in-progress TTL) in ms
-- ARGV[2+i]  the i-th job id
--
-- Returns: the ids of the jobs taken, in batch order (possibly none). A job is taken when
-- its score is due and its in-progress key was free (SET NX PX lease); its score then moves
-- to now + lease. Jobs not in the queue, not yet due, or in progress elsewhere are skipped.
local now = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tonumber(score) <= now
     and redis.call('SET', KEYS[i - 1], '1', 'NX', 'PX', ARGV[2]) then
    -- Hidden from every reader of due jobs until the lease ends (a visibility timeout):
    -- other workers do not try it again on every poll while this batch runs.
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id)
    out[#out + 1] = id
  end
end
return out
