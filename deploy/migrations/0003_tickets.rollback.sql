DROP VIEW ticket_availability;

DROP FUNCTION ticket_effective_status(text, timestamptz);

DROP FUNCTION ticket_is_available(text, timestamptz);

DROP TABLE tickets;
