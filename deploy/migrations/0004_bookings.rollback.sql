DROP TABLE idempotency_keys;

DROP TABLE payments;

ALTER TABLE tickets DROP CONSTRAINT tickets_booking_id_fkey;

DROP TABLE booking_tickets;

DROP TABLE bookings;
