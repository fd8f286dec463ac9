-- cancel_ended: answer an app's cancel request for a run that has already ended.
--
-- Run by a worker that read the request from the cancels stream and does not drive the run
-- (the run's owner, if any, cancels it itself). Writes the answer into the request itself, so
-- running it on every worker, or twice, changes nothing more.
--
-- KEYS[1]  the run's result string <prefix>:result:<id> (the final event JSON)
-- KEYS[2]  the run's cancel request hash <prefix>:cancel:<id> (reason, requested_at)
--
-- Returns:
--   1  the run had ended: outcome (and final_status) written into KEYS[2], unless already
--   0  the run has not ended (an owner, or the next one, sees the request), or no request
local final = redis.call('GET', KEYS[1])
if not final or redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local ok, event = pcall(cjson.decode, final)
local outcome, status = 'already_ended', ''
if ok and type(event) == 'table' then
  if type(event['status']) == 'string' then status = event['status'] end
  local cancel = event['cancel']
  if type(cancel) == 'table' and cancel['reason'] == 'app' then outcome = 'cancelled' end
end
redis.call('HSETNX', KEYS[2], 'outcome', outcome)
redis.call('HSETNX', KEYS[2], 'final_status', status)
return 1
