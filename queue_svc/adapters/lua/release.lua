-- Give the lease up, if this process still holds it (compare and delete). No prelude.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
