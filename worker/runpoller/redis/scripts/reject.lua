-- reject: a job that names a run but is invalid: record a final error unless the run exists.
--
-- KEYS[1]  run hash <prefix>:run:<id>
-- KEYS[2]  the run's events stream <prefix>:events:<id>
-- KEYS[3]  the run's result string <prefix>:result:<id>
-- KEYS[4]  the index of unfinished runs <prefix>:runs:active (zset run id -> accepted ms)
-- KEYS[5]  the index of ended runs <prefix>:runs:ended (zset run id -> end ms)
-- KEYS[6]  this minute's outcome counts <prefix>:outcomes:<epoch minute> (hash status -> n)
-- ARGV[1]  approximate MAXLEN of the events stream
-- ARGV[2]  final event data (also the result's value)
-- ARGV[3]  TTL in s of the run hash, the events stream and the result
-- ARGV[4]  run id (the member added to KEYS[5])
-- ARGV[5]  now, epoch ms (the caller's clock: the run's score in KEYS[5]; housekeeping trims
--          members older than the record TTL once a minute)
-- ARGV[6]  the final event's status (the field counted in KEYS[6], as finalize counts it)
--
-- Returns:
--   1  recorded (a final run hash with no owner, the final event, the result), listed in
--      KEYS[5] and not in KEYS[4] (where an earlier run of this id whose record expired
--      may linger)
--   0  the run already exists (valid, or already rejected): nothing written
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'final', '1', 'owner', '')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'final', 'data', ARGV[2])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[4])
if redis.call('HINCRBY', KEYS[6], ARGV[6], 1) == 1 then
  redis.call('EXPIRE', KEYS[6], 7200)
end
return 1
