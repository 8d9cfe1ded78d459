
-- KEYS: active_sessions, then for each group its session_mapping and session_state
-- ARGV: key prefix, then for each group: tenant, session, explicit conversation id or '',
--       candidate id, conversation_json, create, the latest created_at, its number of
--       messages n, then its n message triples.
-- Returns one reply of save_group's per group, in order.
local prefix = ARGV[1]
local replies = {}
local touched = new_touched()
local a = 2
for g = 0, (#KEYS - 1) / 2 - 1 do
  local n = tonumber(ARGV[a + 7])
  local first = a + 8
  local last = first + 3 * n - 1
  replies[#replies + 1] = save_group(KEYS[2 + 2 * g], KEYS[3 + 2 * g], touched, ARGV[a],
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], prefix, ARGV[a + 4], ARGV[a + 5], ARGV[a + 6],
    first, last)
  a = last + 1
end
touch_indexes(KEYS[1], prefix, touched)
return replies
