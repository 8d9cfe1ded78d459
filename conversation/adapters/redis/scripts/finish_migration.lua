
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation, summary, token_counts
-- ARGV: expected count, tenant, marker seconds
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7], KEYS[8])
redis.call('SET', KEYS[5], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
