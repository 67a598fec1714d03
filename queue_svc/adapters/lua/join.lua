-- KEYS[4] the buyer's bucket, KEYS[5] the set of events with a queue. ARGV: 4 user, 5 bucket,
-- 6 the pre-queue draw, 7 expire_at, 8 the event id. Reply: vitals, then the buyer's standing.
local ukey, user, bucket, expire_at = KEYS[4], ARGV[4], ARGV[5], ARGV[7]
local is_sealed = sealed()
local st = standing(ukey, user, head(), is_sealed, true)
if st[1] == 'pre' or st[1] == 'wait' or st[1] == 'admitted' then return reply(st) end

-- The buyer now at slot j moves to the new slot i (inside-out Fisher-Yates), with its bits.
local function move(j, i)
  local v = redis.call('HGET', slot_key(j), fmt(j % BLOCK))
  redis.call('HSET', slot_key(i), fmt(i % BLOCK), v)
  redis.call('PEXPIREAT', slot_key(i), expire_at)
  local b, mover = string.match(v, '^(%d+):(.*)$')
  local mkey = user_key(b)
  local rec = redis.call('HGET', mkey, mover)
  if rec then
    local kind, x, join = parse(rec)
    if kind == 'w' and x == j then redis.call('HSET', mkey, mover, fmt(i) .. ':' .. fmt(join)) end
  end
  redis.call('SETBIT', GONE, i, redis.call('GETBIT', GONE, j))
  for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
    local key = alive_key(k)
    if redis.call('EXISTS', key) == 1 then
      redis.call('SETBIT', key, i, redis.call('GETBIT', key, j))
      redis.call('SETBIT', key, j, 0)
    end
  end
end

local i = redis.call('HINCRBY', STATE, 'n', 1) - 1
local waiting = redis.call('HINCRBY', STATE, 'waiting', 1)
local slot = i
if not is_sealed then
  slot = math.min(i, math.floor(tonumber(ARGV[6]) / DRAW_SPAN * (i + 1)))
  if slot ~= i then move(slot, i) end
end
local join = math.floor(NOW / 1000)
redis.call('HSET', slot_key(slot), fmt(slot % BLOCK), bucket .. ':' .. user)
redis.call('HSET', ukey, user, fmt(slot) .. ':' .. fmt(join))
redis.call('SETBIT', GONE, slot, 0)
touch(slot)
redis.call('SADD', KEYS[5], ARGV[8])
for _, key in ipairs({STATE, GONE, ukey, slot_key(slot)}) do
  redis.call('PEXPIREAT', key, expire_at)
end
if is_sealed then return reply({'wait', slot, waiting, join}) end
return reply({'pre', slot, 0, join})
