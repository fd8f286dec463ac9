-- finalize: write a run's final event and result exactly once, while this worker owns it.
--
-- KEYS[1]  run hash <prefix>:run:<id>
-- KEYS[2]  the run's events stream <prefix>:events:<id>
-- KEYS[3]  the run's result string <prefix>:result:<id>
-- KEYS[4]  this worker's owned set <prefix>:owned:<me>
-- KEYS[5]  this minute's outcome counts <prefix>:outcomes:<epoch minute> (hash status -> n)
-- KEYS[6]  the index of unfinished runs <prefix>:runs:active (zset run id -> accepted ms)
-- KEYS[7]  the index of ended runs <prefix>:runs:ended (zset run id -> end ms)
-- ARGV[1]  me: this worker's id (must be the run's owner)
-- ARGV[2]  engine state JSON
-- ARGV[3]  approximate MAXLEN of the events stream
-- ARGV[4]  final event data (also the result's value)
-- ARGV[5]  TTL in s of the result, the run hash and the events stream from now on
-- ARGV[6]  run id (the member removed from the owned set and KEYS[6], added to KEYS[7])
-- ARGV[7]  final status (the field counted in KEYS[5])
-- ARGV[8]  now, epoch ms (the caller's clock: the run's score in KEYS[7]; housekeeping trims
--          members older than the record TTL once a minute, not every finalize)
-- ARGV[9..] pairs of (event type, event data): events held back while the results were
--          fetched, written before the final event
--
-- Returns:
--   1  written (final event, result, outcome count; owner cleared, job dropped; moved from
--      KEYS[6] to KEYS[7])
--   0  the run was already final: nothing written
--  -1  this worker does not own the run: nothing written
--  -2  the run has no record (Redis lost its data): nothing written; the owner restores it
-- One read for the three checks: every record has an owner field or is final, so a reply
-- without either is a missing record (EXISTS confirms it: the rare path).
local record = redis.call('HMGET', KEYS[1], 'final', 'owner')
if not record[1] and not record[2] and redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if record[1] then return 0 end
if record[2] ~= ARGV[1] then return -1 end
-- 1 means this field was just created (and the hash with it, if it is the first): set the
-- TTL then, not on every run.
if redis.call('HINCRBY', KEYS[5], ARGV[7], 1) == 1 then
  redis.call('EXPIRE', KEYS[5], 7200)
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'final', '1', 'owner', '')
redis.call('HDEL', KEYS[1], 'job')
for i = 9, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'final', 'data', ARGV[4])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SREM', KEYS[4], ARGV[6])
redis.call('ZREM', KEYS[6], ARGV[6])
redis.call('ZADD', KEYS[7], ARGV[8], ARGV[6])
return 1
