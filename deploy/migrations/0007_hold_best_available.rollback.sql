DROP FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid);
