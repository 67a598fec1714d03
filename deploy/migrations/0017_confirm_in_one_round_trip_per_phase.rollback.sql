DROP FUNCTION confirm_sell(uuid);
DROP FUNCTION confirm_begin(text, uuid[], text, text);
