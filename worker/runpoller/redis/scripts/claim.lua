-- claim: for each of a batch of runs, create its record (its first enqueue) or take over one
-- no live worker holds; and read the app's cancel request for it, before the claim, in the
-- same atomic step (so no request falls between the read and the claim, and the caller has
-- no I/O left between the claim and the adoption).
--
-- One call claims every run an intake batch takes (runpoller.redis.store.RunStore.claim
-- gathers the concurrent calls of one event-loop turn): one round trip and one script call
-- for the batch, and the owned set, the active index and the ended index each written once.
--
-- KEYS[1]  this worker's owned set <prefix>:owned:<me>
-- KEYS[2]  the index of unfinished runs <prefix>:runs:active (zset run id -> accepted ms)
-- KEYS[3]  the index of ended runs <prefix>:runs:ended (zset run id -> end ms)
-- then per run i (0-based), at 4 + 3i:
--   run hash <prefix>:run:<id> (fields job, state, owner, final)
--   the run's events stream <prefix>:events:<id>
--   the app's cancel request <prefix>:cancel:<id> (fields reason, requested_at)
-- ARGV[1]  me: this worker's id
-- ARGV[2]  heartbeat key prefix <prefix>:worker: (see below)
-- ARGV[3]  TTL in s of a new run's hash and events stream
-- ARGV[4]  approximate MAXLEN of the events stream
-- ARGV[5]  now, epoch ms (the caller's clock: the index score of a new run)
-- then per run i, at 6 + 4i: run id (the member of the owned set and the indexes), job JSON
--   and engine state JSON (stored on a new run), data of the 'accepted' event (a new run)
--
-- Not declared: the current owner's heartbeat key, ARGV[2] .. owner. The owner is only known
-- once the run hash has been read, inside this script, so it cannot be passed as a KEY.
--
-- Returns 4 values per run, in order: outcome, cancel, a, b. cancel is the app's cancel
-- reason ('' if it gave none) or nil when no request was made (read for 'new' and 'resumed'
-- only). outcome, a, b are one of:
--   'new', nil, nil          no record: created, owned by me, 'accepted' event written,
--                            listed in KEYS[2] at ARGV[5] (and no longer in KEYS[3], where
--                            an earlier run of this id whose record expired may linger)
--   'resumed', job, state    an unfinished run with no live owner (none, me, or a dead one):
--                            now owned by me; its stored job and state JSON. Listed in
--                            KEYS[2] if it was not (a run accepted before the index existed)
--   'owned', owner, nil      held by another worker whose heartbeat lives: nothing written
--   'done', nil, nil         the run has its final event: nothing written
local me, ttl, maxlen, now = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local out = {}
local owned, new, resumed = {}, {}, {}
local n = (#KEYS - 3) / 3
for i = 0, n - 1 do
  local run, events, cancel = KEYS[4 + 3 * i], KEYS[5 + 3 * i], KEYS[6 + 3 * i]
  local a = 6 + 4 * i
  local id = ARGV[a]
  local outcome, x, y, asked = 'new', false, false, false
  -- The same run twice in one batch (two jobs for it): the second finds it owned by me.
  if redis.call('EXISTS', run) == 1 then
    local rec = redis.call('HMGET', run, 'final', 'owner', 'job', 'state')
    if rec[1] then
      outcome = 'done'
    elseif rec[2] and rec[2] ~= '' and rec[2] ~= me
        and redis.call('EXISTS', ARGV[2] .. rec[2]) == 1 then
      outcome, x = 'owned', rec[2]
    else
      redis.call('HSET', run, 'owner', me)
      owned[#owned + 1] = id
      resumed[#resumed + 1] = id
      outcome, x, y = 'resumed', rec[3], rec[4]
    end
  else
    redis.call('HSET', run, 'job', ARGV[a + 1], 'state', ARGV[a + 2], 'owner', me)
    redis.call('EXPIRE', run, ttl)
    redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'type', 'accepted', 'data', ARGV[a + 3])
    redis.call('EXPIRE', events, ttl)
    owned[#owned + 1] = id
    new[#new + 1] = id
  end
  if outcome == 'new' or outcome == 'resumed' then
    local req = redis.call('HMGET', cancel, 'reason', 'requested_at')
    if req[1] or req[2] then asked = req[1] or '' end
  end
  out[#out + 1] = outcome
  out[#out + 1] = asked
  out[#out + 1] = x or false
  out[#out + 1] = y or false
end
-- The sets and indexes, once for the batch (variadic; unpack stays far below Lua's limit:
-- a batch is at most one queue read, 500 jobs).
if #owned > 0 then redis.call('SADD', KEYS[1], unpack(owned)) end
-- {now, id, now, id, ...}: every id scored at the caller's clock, for one variadic ZADD.
local function scored(ids)
  local pairs_ = {}
  for _, id in ipairs(ids) do
    pairs_[#pairs_ + 1] = now
    pairs_[#pairs_ + 1] = id
  end
  return pairs_
end
if #new > 0 then
  redis.call('ZADD', KEYS[2], unpack(scored(new)))
  redis.call('ZREM', KEYS[3], unpack(new))
end
if #resumed > 0 then
  redis.call('ZADD', KEYS[2], 'NX', unpack(scored(resumed)))
end
return out
