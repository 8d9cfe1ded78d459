
-- KEYS: session_mapping, session_state, active_sessions
-- ARGV: tenant, session, explicit conversation id or '', candidate id, key prefix,
--       conversation_json, create, the latest created_at, then the message triples.
local touched = new_touched()
local reply = save_group(KEYS[1], KEYS[2], touched, ARGV[1], ARGV[2], ARGV[3], ARGV[4],
                         ARGV[5], ARGV[6], ARGV[7], ARGV[8], 9, #ARGV)
touch_indexes(KEYS[3], ARGV[5], touched)
return reply
