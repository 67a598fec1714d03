-- Fenced by the lease in KEYS[4]. ARGV: 4 owner, 5 limit, 6 tokens (refilled), 7 tokens_ms,
-- 8 admission ttl ms, 9 max slots to scan, 10 expire_at. Reply: admitted, dropped, head.
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return {-1, 0, 0} end
if not sealed() then return {0, 0, head()} end
local limit, tokens = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, max_scan = tonumber(ARGV[8]), tonumber(ARGV[9])
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local admitted, dropped, scanned = 0, 0, 0
local expire = NOW + ttl
while admitted < limit and hd < n and scanned < max_scan do
  if redis.call('GETBIT', GONE, hd) == 0 then
    if is_alive(hd) then
      local v = redis.call('HGET', slot_key(hd), fmt(hd % BLOCK))
      local b, user = string.match(v or '', '^(%d+):(.*)$')
      if b then
        local ukey = user_key(b)
        local rec = redis.call('HGET', ukey, user)
        if rec then
          local kind, x, join = parse(rec)
          if kind == 'w' and x == hd then
            redis.call('HSET', ukey, user, 'a' .. fmt(expire) .. ':' .. fmt(join))
            redis.call('ZADD', ACTIVE, expire, user)
            admitted = admitted + 1
          end
        end
      end
    else
      redis.call('SETBIT', GONE, hd, 1)
      dropped = dropped + 1
    end
  end
  hd = hd + 1
  scanned = scanned + 1
  if hd % BLOCK == 0 then redis.call('DEL', slot_key(hd - 1)) end
end
local left = string.format('%.6f', math.max(0, tokens - admitted))
redis.call('HSET', STATE, 'head', hd, 'tokens', left, 'tokens_ms', ARGV[7])
if admitted + dropped > 0 then redis.call('HINCRBY', STATE, 'waiting', -(admitted + dropped)) end
if admitted > 0 then
  redis.call('HINCRBY', STATE, 'admitted', admitted)
  redis.call('ZADD', KEYS[5], NOW, fmt(NOW) .. ':' .. fmt(admitted))
  redis.call('PEXPIREAT', ACTIVE, ARGV[10])
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', NOW - 60000)
redis.call('PEXPIRE', KEYS[5], 120000)
return {admitted, dropped, hd}
