DROP FUNCTION hold_best_available_batch(text[], uuid[], integer[], text[], text[], interval, uuid[]);
DROP FUNCTION hold_tickets_batch(text[], integer[], uuid[], interval, uuid[]);
