
-- KEYS: a second's close bucket, its timer marker
-- The marker goes first: a close that lands after this arms a timer of its own, so none
-- is left in a bucket whose timer has already looked.
redis.call('DEL', KEYS[2])
return redis.call('SMEMBERS', KEYS[1])
