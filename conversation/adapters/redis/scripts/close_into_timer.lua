
-- KEYS: session_mapping, session_state   ARGV: tenant, closed_at
local owner = redis.call('HGET', KEYS[2], 'tenant_id')
if not owner then return {0, '', 0} end
if owner ~= ARGV[1] then return {-2, '', 0} end
local conversation = redis.call('GET', KEYS[1])
if not conversation then return {0, '', 0} end
local generation = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
-- KEYS (more): closed_sessions, the second's bucket, its marker
-- ARGV (more): session, closed epoch (text), keep seconds
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[4], conversation .. ':' .. generation .. ':' .. ARGV[4])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
local armed = 0
if redis.call('SET', KEYS[5], '1', 'NX', 'EX', tonumber(ARGV[5])) then armed = 1 end
return {1, conversation, generation, armed}
