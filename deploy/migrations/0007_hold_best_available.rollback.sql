DROP FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid);
DROP INDEX tickets_hold_expiry_idx;
DROP INDEX tickets_free_idx;
