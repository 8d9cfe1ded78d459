
-- One session's messages (ARGV[first..last], as (message_id, created_at, message_json)):
-- resolve the session, then append each, in order.
-- tenant, session, explicit conversation id or '', candidate id, key prefix,
-- conversation_json, create ('1': an explicit conversation may be created, or a new
-- conversation for the session is confirmed), the latest created_at of the messages.
-- Returns one status per message, then the conversation id; {-4, ''}: another tenant's
-- session; -5 for every message: the session has no conversation, confirm a new one.
-- Each message stored that someone waits for is announced on its channel (RedisKeys.arrival;
-- see announce). The global indexes
-- (active sessions, the tenant's active conversations, their activity) and the announcements
-- are noted in `touched` and written by touch_indexes once for all the groups of a call, not
-- once a group.
local function save_group(k_mapping, k_state, touched, tenant, session, explicit, candidate,
                          prefix, conversation_json, create_arg, latest, first, last)
  if explicit ~= '' then candidate = '' end
  local resolved = resolve(k_mapping, k_state, tenant, candidate, latest, create_arg)
  if resolved[1] == -2 then return {-4, ''} end
  if resolved[1] == -5 then
    local unconfirmed = {}
    for i = first, last, 3 do unconfirmed[#unconfirmed + 1] = -5 end
    unconfirmed[#unconfirmed + 1] = ''
    return unconfirmed
  end
  local id = explicit
  if id == '' then id = resolved[2] end
  local given = candidate
  if explicit ~= '' then given = explicit end
  if id ~= given then
    local doc = cjson.decode(conversation_json)
    doc['id'] = id
    conversation_json = cjson.encode(doc)
  end
  local create = '0'
  if explicit == '' or create_arg == '1' then create = '1' end
  local tag = '{' .. id .. '}'
  local k_messages, k_ids = prefix .. 'messages:' .. tag, prefix .. 'message_ids:' .. tag
  local k_last, k_owner = prefix .. 'last_at:' .. tag, prefix .. 'owner:' .. tag
  local k_migrated = prefix .. 'migrated:' .. tag
  local k_conversation = prefix .. 'conversation:' .. tenant .. ':' .. tag
  local statuses = {}
  local stored, saved = false, false
  for i = first, last, 3 do
    local status = append(k_messages, k_ids, k_last, k_owner, k_migrated, k_conversation,
      tenant, ARGV[i], ARGV[i + 1], ARGV[i + 2], conversation_json, create)
    statuses[#statuses + 1] = status
    if status >= 0 then stored = true end
    if status == 1 then
      saved = true
      touched.arrived[#touched.arrived + 1] = prefix .. 'arrived:' .. tenant .. ':' .. ARGV[i]
    end
  end
  if stored then
    if explicit ~= '' and resolved[2] == '' then
      resolve(k_mapping, k_state, tenant, explicit, '', '1')
    end
    touched.sessions[#touched.sessions + 1] = session
    local ids = touched.conversations[tenant]
    if not ids then
      ids = {}
      touched.conversations[tenant] = ids
    end
    ids[#ids + 1] = id
    if saved then touched.saved[#touched.saved + 1] = id end
  end
  statuses[#statuses + 1] = id
  return statuses
end

local function new_touched()
  return {sessions = {}, conversations = {}, saved = {}, arrived = {}}
end

-- redis.call(command, key, ...members) in chunks (Lua's unpack has a stack limit).
local function add_all(command, key, members)
  for i = 1, #members, 1000 do
    redis.call(command, key, unpack(members, i, math.min(i + 999, #members)))
  end
end

-- Wakes each get_context waiting for one of the messages stored (wait_for_message_id): one
-- PUBSUB NUMSUB for a call's messages (nearly always nobody listens), then a PUBLISH where
-- someone does, rather than a PUBLISH per message of a batch. One message: its PUBLISH.
-- NUMSUB counts this server's SUBSCRIBE clients, where the waiters subscribe (these scripts
-- run on a standalone Redis only; a cluster saves through append.lua, which always PUBLISHes).
-- An ACL user without PUBSUB gets every PUBLISH: an error here, after the appends, would fail
-- a call whose messages are stored (its retry then answering "duplicate" for each).
local function announce(channels)
  if #channels == 1 then
    redis.call('PUBLISH', channels[1], '1')
    return
  end
  for i = 1, #channels, 1000 do
    local last = math.min(i + 999, #channels)
    local counts = redis.pcall('PUBSUB', 'NUMSUB', unpack(channels, i, last))
    if type(counts) == 'table' and counts.err then
      for j = i, last do redis.call('PUBLISH', channels[j], '1') end
    else
      for j = 2, #counts, 2 do
        if counts[j] > 0 then redis.call('PUBLISH', counts[j - 1], '1') end
      end
    end
  end
end

-- The global indexes of what save_group stored: one SADD or ZADD each, not one a group; then
-- the announcements.
local function touch_indexes(k_active, prefix, touched)
  add_all('SADD', k_active, touched.sessions)
  for tenant, ids in pairs(touched.conversations) do
    add_all('SADD', prefix .. 'active_conversations:' .. tenant, ids)
  end
  if #touched.saved > 0 then
    local now = redis.call('TIME')[1]
    local scored = {}
    for _, id in ipairs(touched.saved) do
      scored[#scored + 1] = now
      scored[#scored + 1] = id
    end
    add_all('ZADD', prefix .. 'conversation_activity', scored)
  end
  announce(touched.arrived)
end
