-- claim: create a run's record (its first enqueue) or take over one no live worker holds.
--
-- KEYS[1]  run hash <prefix>:run:<id> (fields job, state, owner, final)
-- KEYS[2]  this worker's owned set <prefix>:owned:<me>
-- KEYS[3]  the run's events stream <prefix>:events:<id>
-- KEYS[4]  the index of unfinished runs <prefix>:runs:active (zset run id -> accepted ms)
-- KEYS[5]  the index of ended runs <prefix>:runs:ended (zset run id -> end ms)
-- ARGV[1]  me: this worker's id
-- ARGV[2]  heartbeat key prefix <prefix>:worker: (see below)
-- ARGV[3]  job JSON, stored on a new run
-- ARGV[4]  engine state JSON, stored on a new run
-- ARGV[5]  TTL in s of a new run's hash and events stream
-- ARGV[6]  run id (the member added to the owned set)
-- ARGV[7]  data of the 'accepted' event written for a new run
-- ARGV[8]  approximate MAXLEN of the events stream
-- ARGV[9]  now, epoch ms (the caller's clock: the index score of a new run)
--
-- Not declared: the current owner's heartbeat key, ARGV[2] .. owner. The owner is only known
-- once the run hash has been read, inside this script, so it cannot be passed as a KEY.
--
-- Returns one of:
--   {'new'}                 no record: created, owned by me, 'accepted' event written,
--                           listed in KEYS[4] at ARGV[9] (and no longer in KEYS[5], where an
--                           earlier run of this id whose record expired may linger)
--   {'resumed', job, state} an unfinished run with no live owner (none, me, or a dead one):
--                           now owned by me; its stored job and state JSON. Listed in KEYS[4]
--                           if it was not (a run accepted before the index existed)
--   {'owned', owner}        held by another worker whose heartbeat lives: nothing written
--   {'done'}                the run has its final event: nothing written
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return {'done'} end
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= '' and owner ~= ARGV[1]
     and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
    return {'owned', owner}
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('ZADD', KEYS[4], 'NX', ARGV[9], ARGV[6])
  return {'resumed', redis.call('HGET', KEYS[1], 'job'), redis.call('HGET', KEYS[1], 'state')}
end
redis.call('HSET', KEYS[1], 'job', ARGV[3], 'state', ARGV[4], 'owner', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'type', 'accepted', 'data', ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[6])
redis.call('ZREM', KEYS[5], ARGV[6])
return {'new'}
