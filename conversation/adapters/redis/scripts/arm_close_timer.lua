
-- KEYS: a second's close bucket, its timer marker (one hash tag: one slot)
-- ARGV: keep seconds, then the members to add ("conversation_id:generation:closed epoch")
-- Returns 1 when this call armed the second's timer (the caller schedules it), else 0.
if #ARGV > 1 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 1 end
return 0
