
-- KEYS: every key of one conversation (one hash tag, one slot), owner and migrated marker
--       first   ARGV: the tenant the keys were named for ('' for none)
-- All go in one step, or none if the owner changed since they were named (-1: read again).
local owner = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2]) or ''
if owner ~= ARGV[1] then return -1 end
return redis.call('DEL', unpack(KEYS))
