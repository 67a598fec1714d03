-- ARGV[4..]: bucket, user pairs. Reply: vitals, sealed, head, then 4 fields per buyer.
local is_sealed = sealed()
local hd = head()
local out = vitals()
out[#out + 1] = is_sealed and 1 or 0
out[#out + 1] = hd
for a = 4, #ARGV, 2 do
  local st = standing(user_key(ARGV[a]), ARGV[a + 1], hd, is_sealed, false)
  for _, v in ipairs(st) do out[#out + 1] = v end
end
return packed(out)
