-- restore: re-create the record of a run this worker drives after Redis lost it (a restart
-- without persistence, a failover to an empty replica, a FLUSHDB), from the worker's memory.
--
-- KEYS[1]  run hash <prefix>:run:<id>
-- KEYS[2]  this worker's owned set <prefix>:owned:<me>
-- KEYS[3]  the index of unfinished runs <prefix>:runs:active (zset run id -> accepted ms)
-- ARGV[1]  me: this worker's id (the owner again)
-- ARGV[2]  job JSON, as stored at intake
-- ARGV[3]  engine state JSON (the same deadline, phase and round as before the loss)
-- ARGV[4]  TTL in s of the run hash
-- ARGV[5]  run id (the member added to the owned set and KEYS[3])
-- ARGV[6]  now, epoch ms (the caller's clock: the run's score in KEYS[3], lost with the
--          record; the restored record's TTL starts now too)
--
-- Returns:
--   1  restored, owned by this worker, listed in KEYS[3]
--   0  the run has a record again (another worker took it from a new job): left untouched
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'job', ARGV[2], 'state', ARGV[3], 'owner', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
return 1
