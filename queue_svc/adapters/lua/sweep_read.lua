-- The sweeper's read: now, head, n, then gone and the alive bitmaps from head's byte to n's.
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local out = {NOW, hd, n}
if n <= hd then return out end
local first, last = math.floor(hd / 8), math.floor((n - 1) / 8)
out[#out + 1] = redis.call('GETRANGE', GONE, first, last)
for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
  out[#out + 1] = redis.call('GETRANGE', alive_key(k), first, last)
end
return out
