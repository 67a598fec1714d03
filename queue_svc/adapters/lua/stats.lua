-- KEYS[4]: the admission log. Reply: vitals, admitted total, admitted over the last minute.
local out = vitals()
out[#out + 1] = tonumber(redis.call('HGET', STATE, 'admitted') or '0')
local last = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. fmt(NOW - 60000), '+inf')) do
  last = last + tonumber(string.match(m, ':(%d+)$'))
end
out[#out + 1] = last
return packed(out)
