
-- KEYS: session_mapping, session_state   ARGV: conversation id, generation, keep seconds
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'closed_at', 'conversation_id')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
