DROP FUNCTION hold_picked_seats_batch(text[], integer[], uuid[], interval, uuid[], boolean[]);
