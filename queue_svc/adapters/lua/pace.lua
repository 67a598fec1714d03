-- The admitter's read: vitals (after dropping expired admissions), tokens, tokens_ms, sealed.
redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', NOW)
local out = vitals()
local s = redis.call('HMGET', STATE, 'tokens', 'tokens_ms')
out[#out + 1] = s[1] or ''
out[#out + 1] = s[2] or ''
out[#out + 1] = sealed() and 1 or 0
return packed(out)
