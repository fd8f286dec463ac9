-- heartbeat: renew a worker's lease and note the beat's time (run by the loop and the thread).
--
-- KEYS[1]  the worker's heartbeat string <prefix>:worker:<me>
-- KEYS[2]  the workers zset <prefix>:workers (worker id -> last beat, epoch ms)
-- ARGV[1]  me: this worker's id
-- ARGV[2]  the beat's time, epoch ms
-- ARGV[3]  lease TTL in ms
-- ARGV[4]  heartbeat value: JSON {"ts": epoch ms, "in_flight": runs held}
--
-- Returns:
--   1  the lease was alive (the key existed before this beat)
--   0  the lease had lapsed (or this is the first beat): others may have taken the runs
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return alive
