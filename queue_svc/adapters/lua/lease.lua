-- The admitter's lease in KEYS[1]: ARGV[1] the owner takes or renews it for ARGV[2] ms.
-- A standalone script (no prelude). Reply: 1 held, 0 another process holds it.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
