
-- KEYS: session_mapping, session_state, active_sessions
-- ARGV: tenant, session, explicit conversation id or '', candidate id, key prefix,
--       conversation_json, create, the latest created_at, then the message triples.
return save_group(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
                  ARGV[6], ARGV[7], ARGV[8], 9, #ARGV)
