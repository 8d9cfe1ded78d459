
-- KEYS: active_sessions, then for each group its session_mapping and session_state
-- ARGV: key prefix, then for each group: tenant, session, explicit conversation id or '',
--       candidate id, conversation_json, create, the latest created_at, its number of
--       messages n, then its n message triples.
-- Returns save_group's replies, in order, as one flat array: each reply's length, then its
-- elements. (A table per group made Redis 6 write the reply group by group: 500 writes, and
-- as many reads by the client, for a batch spanning 500 sessions, measured at ~2.5 ms of
-- Redis's time and ~1.3 ms of the worker's; flat, a few writes.)
local prefix = ARGV[1]
local replies = {}
local touched = new_touched()
local a = 2
for g = 0, (#KEYS - 1) / 2 - 1 do
  local n = tonumber(ARGV[a + 7])
  local first = a + 8
  local last = first + 3 * n - 1
  local reply = save_group(KEYS[2 + 2 * g], KEYS[3 + 2 * g], touched, ARGV[a],
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], prefix, ARGV[a + 4], ARGV[a + 5], ARGV[a + 6],
    first, last)
  replies[#replies + 1] = #reply
  for i = 1, #reply do replies[#replies + 1] = reply[i] end
  a = last + 1
end
touch_indexes(KEYS[1], prefix, touched)
return replies
