-- publish: persist a run's state and append its events, only while this worker owns it.
--
-- KEYS[1]  run hash <prefix>:run:<id>
-- KEYS[2]  the run's events stream <prefix>:events:<id>
-- ARGV[1]  me: this worker's id (must be the run's owner)
-- ARGV[2]  engine state JSON
-- ARGV[3]  approximate MAXLEN of the events stream
-- ARGV[4..] pairs of (event type, event data), appended in order
--
-- Also the fenced claim before a request that must not be sent twice (a continuation, a
-- create, a cancel): called with the state that names the request and no events.
--
-- Returns:
--   1  written
--   0  this worker does not own the run (any more): nothing written
--  -2  the run has no record (Redis lost its data): nothing written; the owner restores it
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner and redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
if owner ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
end
return 1
