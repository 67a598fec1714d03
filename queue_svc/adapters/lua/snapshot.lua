-- ARGV[4]: the highest slot of interest. Reply: vitals, sealed, head, n, gone bits from head.
local is_sealed = sealed()
local hd = head()
local upto = tonumber(ARGV[4])
local out = vitals()
out[#out + 1] = is_sealed and 1 or 0
out[#out + 1] = hd
out[#out + 1] = tonumber(redis.call('HGET', STATE, 'n') or '0')
local gone = ''
if upto >= hd then gone = redis.call('GETRANGE', GONE, math.floor(hd / 8), math.floor(upto / 8)) end
return {packed(out), gone}
