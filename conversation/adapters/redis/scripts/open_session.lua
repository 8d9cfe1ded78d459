
-- KEYS: session_state   ARGV: tenant
local owner = redis.call('HGET', KEYS[1], 'tenant_id')
if not owner then return 0 end
if owner ~= ARGV[1] then return -2 end
if redis.call('HEXISTS', KEYS[1], 'closed_at') == 1 then
  redis.call('HDEL', KEYS[1], 'closed_at')
  redis.call('HINCRBY', KEYS[1], 'generation', 1)
  return 1
end
return 0
