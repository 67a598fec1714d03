DROP FUNCTION hold_tickets_batch(text[], integer[], uuid[], interval, uuid[]);
