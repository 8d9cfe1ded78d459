
-- KEYS: session_mapping, session_state   ARGV: conversation id
-- The session's records go with its conversation, unless it has moved on to another one.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2])
