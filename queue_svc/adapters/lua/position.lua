-- KEYS[4] the buyer's bucket, ARGV[4] the user. Reply: vitals, then the
-- buyer's standing; polling keeps the place.
local is_sealed = sealed()
return reply(standing(KEYS[4], ARGV[4], head(), is_sealed, true))
