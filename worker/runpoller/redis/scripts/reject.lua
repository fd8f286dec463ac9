-- reject: a job that names a run but is invalid: record a final error unless the run exists.
--
-- KEYS[1]  run hash <prefix>:run:<id>
-- KEYS[2]  the run's events stream <prefix>:events:<id>
-- KEYS[3]  the run's result string <prefix>:result:<id>
-- ARGV[1]  approximate MAXLEN of the events stream
-- ARGV[2]  final event data (also the result's value)
-- ARGV[3]  TTL in s of the run hash, the events stream and the result
--
-- Returns:
--   1  recorded (a final run hash with no owner, the final event, the result)
--   0  the run already exists (valid, or already rejected): nothing written
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'final', '1', 'owner', '')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'final', 'data', ARGV[2])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
