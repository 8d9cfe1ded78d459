
-- KEYS: session_mapping, session_state
-- ARGV: tenant, candidate conversation id or '', the message's created_at ('': none),
--       '1' when a new conversation is confirmed
return resolve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
