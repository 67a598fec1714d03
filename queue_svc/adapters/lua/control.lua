-- ARGV: 4 paused ('' leaves it, '0'/'1'), 5 rate ('' leaves it), 6 cap, 7 expire_at.
if ARGV[4] ~= '' then redis.call('HSET', STATE, 'paused', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', STATE, 'rate', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', STATE, 'cap', ARGV[6]) end
if redis.call('TTL', STATE) < 0 then redis.call('PEXPIREAT', STATE, ARGV[7]) end
return packed(vitals())
