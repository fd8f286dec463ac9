-- reply_unapplied: record why a reply no worker drives a run for could not be applied.
--
-- Run by a worker that read a reply for a run it does not drive. Only the cases no owner
-- will ever answer are recorded: the run has no record, or it had ended before the reply was
-- written. A run in flight is left to its owner (now or after a takeover), which answers
-- with a reply_rejected event on the run's stream when the reply cannot be used.
--
-- KEYS[1]  the run hash <prefix>:run:<id>
-- KEYS[2]  the run's result string <prefix>:result:<id> (the final event JSON)
-- KEYS[3]  the reply's status string <prefix>:reply:<entry id>
-- ARGV[1]  the entry id's milliseconds (when the app wrote the reply)
-- ARGV[2]  run id (as the reply gave it)
-- ARGV[3]  round (as the reply gave it)
-- ARGV[4]  TTL in s of the status
--
-- Returns:
--   1  recorded (JSON {status: "rejected", run_id, round, problem})
--   0  nothing recorded: the run is in flight, or a status exists already
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local problem
if redis.call('EXISTS', KEYS[1]) == 0 then
  problem = string.format('no run %s exists (never enqueued, or its record expired)', ARGV[2])
else
  local final = redis.call('GET', KEYS[2])
  if not final then return 0 end
  local ok, event = pcall(cjson.decode, final)
  if not ok or type(event) ~= 'table' or type(event['ts']) ~= 'number' then return 0 end
  if event['ts'] > tonumber(ARGV[1]) then return 0 end
  local status = type(event['status']) == 'string' and event['status'] or 'its end'
  problem = 'the run had ended (' .. status .. ') before this reply was written'
end
local status = cjson.encode({status = 'rejected', run_id = ARGV[2], round = tonumber(ARGV[3]),
  problem = problem})
redis.call('SET', KEYS[3], status, 'EX', ARGV[4])
return 1
