-- ratelimit_take: take up to a batch of request tokens from a key's budget for one window.
--
-- KEYS[1]  the window's counter <prefix>:ratelimit:<kid>:<window number>
-- ARGV[1]  the budget: requests allowed per window
-- ARGV[2]  batch: the most tokens to take at once
-- ARGV[3]  TTL in s of the counter (set on every grant)
--
-- Returns: the tokens granted, min(batch, budget - used); 0 when the budget is spent (the
-- counter is then left as it is).
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - used)
if grant <= 0 then return 0 end
redis.call('INCRBY', KEYS[1], grant)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return grant
