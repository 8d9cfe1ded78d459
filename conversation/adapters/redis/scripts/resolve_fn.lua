
-- The session's current conversation: set to `candidate` when it has none and one is given
-- (''). A message written after the session closed (`at` later than closed_at) is a
-- reconnect that cancels the pending migration; one written before it is a late delivery,
-- and the migration takes it along.
-- A new conversation is made only when `confirmed` is '1': before that, the caller checks
-- that the messages were not stored by an earlier conversation of the session, migrated
-- since (a redelivered save), so nothing is written and {-5, ''} is returned.
-- Returns {1 if just set else 0, conversation id or ''}, {-2, ''} for another tenant's, or
-- {-5, ''} for a new conversation or session to confirm.
local function resolve(k_mapping, k_state, tenant, candidate, at, confirmed)
  -- One read of the state for both fields (nothing below writes closed_at before its test).
  local state = redis.call('HMGET', k_state, 'tenant_id', 'closed_at')
  local owner, closed_at = state[1], state[2]
  if owner and owner ~= tenant then return {-2, ''} end
  -- A session new to Redis is claimed in PostgreSQL (its durable owner) before it is owned
  -- here, with or without an explicit conversation: unconfirmed, nothing is written.
  if (not owner) and confirmed ~= '1' then return {-5, ''} end
  local conversation = redis.call('GET', k_mapping)
  if (not conversation) and candidate ~= '' and confirmed ~= '1' then return {-5, ''} end
  if not owner then
    redis.call('HSET', k_state, 'tenant_id', tenant, 'generation', 0)
  end
  -- Only a released session's state expires (release_session.lua, which deletes its mapping
  -- in the same step): one with a mapping has no expiry to remove, so no PERSIST a message.
  if not conversation then redis.call('PERSIST', k_state) end
  local created = 0
  if (not conversation) and candidate == '' then
    conversation = ''
  elseif not conversation then
    conversation = candidate
    redis.call('SET', k_mapping, conversation)
    redis.call('HSET', k_state, 'conversation_id', conversation)
    created = 1
  end
  if closed_at and at > closed_at then
    redis.call('HDEL', k_state, 'closed_at')
    redis.call('HINCRBY', k_state, 'generation', 1)
  end
  return {created, conversation}
end
