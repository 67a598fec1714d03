-- Prepended to every queue script but lease.lua and release.lua (redis_store._script).
-- KEYS: 1 the line's state, 2 the gone bitmap, 3 the active admissions; further keys per script.
-- ARGV: 1 the event's key prefix, 2 the epoch (ms), 3 the sale's opening (ms); further per script.
-- __BLOCK__, __ALIVE_EPOCHS__ and __DRAW_SPAN__ are replaced with the Python constants at import.

local P = ARGV[1]
local EPOCH_MS = tonumber(ARGV[2])
local OPEN_MS = tonumber(ARGV[3])
local STATE, GONE, ACTIVE = KEYS[1], KEYS[2], KEYS[3]
local BLOCK = __BLOCK__
local ALIVE_EPOCHS = __ALIVE_EPOCHS__
local DRAW_SPAN = __DRAW_SPAN__

local function fmt(n) return string.format('%d', n) end
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local EPOCH = math.floor(NOW / EPOCH_MS)

local function slot_key(slot) return P .. 's:' .. fmt(math.floor(slot / BLOCK)) end
local function alive_key(k) return P .. 'alive:' .. fmt(k) end
local function user_key(b) return P .. 'u:' .. b end

local function is_alive(slot)
  for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
    if redis.call('GETBIT', alive_key(k), slot) == 1 then return true end
  end
  return false
end

local function touch(slot)
  local key = alive_key(EPOCH)
  redis.call('SETBIT', key, slot, 1)
  redis.call('PEXPIRE', key, EPOCH_MS * (ALIVE_EPOCHS + 1))
end

-- Whether the line is sealed (the sale opened); seals it at the first look after opening.
local function sealed()
  if redis.call('HGET', STATE, 'sealed') then return true end
  if NOW < OPEN_MS then return false end
  if redis.call('EXISTS', STATE) == 1 then redis.call('HSET', STATE, 'sealed', '1') end
  return true
end

local function head() return tonumber(redis.call('HGET', STATE, 'head') or '0') end

-- Set bits of KEY in [from, to).
local function popcount(key, from, to)
  if to <= from then return 0 end
  local c = 0
  local fb, lb = math.floor(from / 8), math.floor((to - 1) / 8)
  if fb == lb then
    for b = from, to - 1 do c = c + redis.call('GETBIT', key, b) end
    return c
  end
  for b = from, (fb + 1) * 8 - 1 do c = c + redis.call('GETBIT', key, b) end
  if lb - 1 >= fb + 1 then c = c + redis.call('BITCOUNT', key, fb + 1, lb - 1) end
  for b = lb * 8, to - 1 do c = c + redis.call('GETBIT', key, b) end
  return c
end

-- kind ('w' in line, 'a' admitted, 'l' left), slot or expiry, join second
local function parse(rec)
  local c = string.sub(rec, 1, 1)
  if c == 'a' then
    local e, j = string.match(rec, '^a(%d+):(%d+)$')
    return 'a', tonumber(e), tonumber(j)
  elseif c == 'l' then
    return 'l', -1, tonumber(string.sub(rec, 2))
  end
  local s, j = string.match(rec, '^(%d+):(%d+)$')
  return 'w', tonumber(s), tonumber(j)
end

-- {kind, slot or expiry, position, join second} of one buyer
local function standing(ukey, user, hd, is_sealed, do_touch)
  local rec = redis.call('HGET', ukey, user)
  if not rec then return {'none', -1, 0, 0} end
  local kind, x, join = parse(rec)
  if kind == 'w' then
    if x < hd or redis.call('GETBIT', GONE, x) == 1 then return {'dropped', x, 0, join} end
    if do_touch then touch(x) end
    if not is_sealed then return {'pre', x, 0, join} end
    return {'wait', x, 1 + x - hd - popcount(GONE, hd, x), join}
  elseif kind == 'a' then
    if x > NOW then return {'admitted', x, 0, join} end
    return {'expired', x, 0, join}
  end
  return {'left', -1, 0, join}
end

-- The line's vital signs: now, waiting, active, paused, rate, cap
local function vitals()
  local s = redis.call('HMGET', STATE, 'waiting', 'paused', 'rate', 'cap')
  local active = redis.call('ZCOUNT', ACTIVE, '(' .. fmt(NOW), '+inf')
  return {NOW, tonumber(s[1] or '0'), active, s[2] or '', s[3] or '', s[4] or ''}
end

-- One bulk string of '|'-separated fields: far cheaper for the client to read than an array.
local function packed(out)
  for i, v in ipairs(out) do
    if type(v) == 'number' then out[i] = fmt(v) end
  end
  return table.concat(out, '|')
end

local function reply(st)
  local out = vitals()
  for _, v in ipairs(st) do out[#out + 1] = v end
  return packed(out)
end
