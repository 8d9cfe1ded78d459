
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation
-- ARGV: tenant, message_id, created_at, message_json, conversation_json, create,
--       the channel announcing the message once stored (get_context's wait_for_message_id)
local status = append(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
                      ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if status == 1 then redis.call('PUBLISH', ARGV[7], '1') end
return status
