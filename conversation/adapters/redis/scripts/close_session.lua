
-- KEYS: session_mapping, session_state   ARGV: tenant, closed_at
local owner = redis.call('HGET', KEYS[2], 'tenant_id')
if not owner then return {0, '', 0} end
if owner ~= ARGV[1] then return {-2, '', 0} end
local conversation = redis.call('GET', KEYS[1])
if not conversation then return {0, '', 0} end
local generation = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
return {1, conversation, generation}
