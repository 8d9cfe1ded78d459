
-- KEYS: owner, summary   ARGV: text, through
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'text', ARGV[1], 'through', ARGV[2])
return 1
