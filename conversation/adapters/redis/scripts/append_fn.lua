
-- Append a message to a conversation's keys. Returns 1 saved, 0 duplicate, -1 moved to
-- PostgreSQL, -2 another tenant's, -3 not active (and create was not asked for).
local function append(k_messages, k_ids, k_last, k_owner, k_migrated, k_conversation,
                      tenant, message_id, created_at, message_json, conversation_json, create)
  local owner = redis.call('GET', k_owner)
  if not owner then
    local moved = redis.call('GET', k_migrated)
    if moved then
      if moved ~= tenant then return -2 end
      return -1
    end
    if create ~= '1' then return -3 end
    redis.call('SET', k_owner, tenant)
    redis.call('SET', k_conversation, conversation_json)
  elseif owner ~= tenant then
    return -2
  end
  if redis.call('SADD', k_ids, message_id) == 0 then return 0 end
  local last = redis.call('GET', k_last)
  if (not last) or created_at >= last then
    redis.call('RPUSH', k_messages, message_json)
    redis.call('SET', k_last, created_at)
    return 1
  end
  -- A late arrival: walk back from the newest message to the one it follows.
  local n = redis.call('LLEN', k_messages)
  for i = -1, -n, -1 do
    local item = redis.call('LINDEX', k_messages, i)
    if cjson.decode(item)['created_at'] <= created_at then
      redis.call('LINSERT', k_messages, 'AFTER', item, message_json)
      return 1
    end
  end
  redis.call('LPUSH', k_messages, message_json)
  return 1
end
