-- release: hand a dead (or, forced, a stopping) worker's runs to the orphan set.
--
-- KEYS[1]  the workers zset <prefix>:workers
-- KEYS[2]  the orphans set <prefix>:orphans (run ids to re-enqueue)
-- KEYS[3]  the released worker's heartbeat string <prefix>:worker:<wid>
-- KEYS[4]  the released worker's owned set <prefix>:owned:<wid>
-- ARGV[1]  wid: the released worker's id
-- ARGV[2]  run key prefix <prefix>:run: (see below)
-- ARGV[3]  force: '1' for a stopping worker releasing its own runs, else '0'
--
-- Not declared: the run hashes, ARGV[2] .. id for each id in KEYS[4]. They are the members
-- of the owned set at the moment the script runs, so they are read here, atomically with
-- the ownership check of each run, not passed in.
--
-- Returns:
--   n   runs handed over (those KEYS[4] named whose owner was still wid; may be 0); the
--       owned set and the worker's zset entry are gone (and, forced, its heartbeat)
--  -1   refused, nothing written: not forced, and the heartbeat lives or the worker is no
--       longer in KEYS[1] (another worker's housekeeping released it first)
if ARGV[3] ~= '1' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
-- Already released by another worker's housekeeping: nothing to do, nothing to report.
if ARGV[3] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local ids = redis.call('SMEMBERS', KEYS[4])
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  if redis.call('HGET', key, 'owner') == ARGV[1] then
    redis.call('HSET', key, 'owner', '')
    redis.call('SADD', KEYS[2], id)
    n = n + 1
  end
end
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('DEL', KEYS[3]) end
return n
