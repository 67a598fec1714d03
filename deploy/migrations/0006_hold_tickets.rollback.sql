DROP FUNCTION hold_tickets(text, uuid[], interval, uuid);
