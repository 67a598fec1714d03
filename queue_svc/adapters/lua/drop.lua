-- ARGV[4..]: slots the sweeper found stale; each is checked again here.
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local dropped = 0
for a = 4, #ARGV do
  local slot = tonumber(ARGV[a])
  if slot >= hd and slot < n and redis.call('GETBIT', GONE, slot) == 0 and not is_alive(slot) then
    redis.call('SETBIT', GONE, slot, 1)
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', STATE, 'waiting', -dropped) end
return dropped
