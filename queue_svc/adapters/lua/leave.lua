-- KEYS[4] the buyer's bucket, ARGV[4] the user. Reply: vitals, then 'left' ('none' if never in
-- line).
local ukey, user = KEYS[4], ARGV[4]
local st = standing(ukey, user, head(), sealed(), false)
local kind = st[1]
if kind == 'none' then return reply(st) end
if kind == 'pre' or kind == 'wait' then
  redis.call('SETBIT', GONE, st[2], 1)
  redis.call('HINCRBY', STATE, 'waiting', -1)
elseif kind == 'admitted' then
  redis.call('ZREM', ACTIVE, user)
end
if kind ~= 'left' then redis.call('HSET', ukey, user, 'l' .. fmt(st[4])) end
return reply({'left', -1, 0, st[4]})
