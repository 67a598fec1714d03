-- ARGV[4..]: bucket, user pairs of watchers: their places are kept.
local hd = head()
local touched = 0
for a = 4, #ARGV, 2 do
  local rec = redis.call('HGET', user_key(ARGV[a]), ARGV[a + 1])
  if rec then
    local kind, x = parse(rec)
    if kind == 'w' and x >= hd and redis.call('GETBIT', GONE, x) == 0 then
      touch(x)
      touched = touched + 1
    end
  end
end
return touched
