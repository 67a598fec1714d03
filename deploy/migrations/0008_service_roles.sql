-- Table ownership (issue 16): each process connects as its own role, granted only what it
-- reads and writes. The tables stay owned by the migrating role (the cluster's admin); the
-- services never own, alter or drop anything. CONTRIBUTING.md ("Who owns which table") is the
-- same table in words, with the reasons.
--
--   ticketing_catalog  owns venues, performers, events; creates an event's tickets (their
--                      seat and price columns, never their hold or sale columns)
--   ticketing_booking  owns bookings, booking_tickets, payments; writes only the hold and sale
--                      columns of tickets; reads events and venues for the sale's rules
--   ticketing_cdc      REPLICATION: owns the replication slot, reads the published tables
--
-- Both API services share idempotency_keys (ticketing_common/idempotency.py): its key
-- includes the method, so neither replays the other's answers. search_svc reads only the
-- search engine and queue_svc asks the catalog over gRPC for an event's policy: neither has a
-- role. Roles are global to the cluster, so another database migrated on the same server
-- (a test's scratch database) finds them already made: creating one is "if missing", and a
-- concurrent creator's unique violation counts as found.
--
-- Authentication is left to the server's pg_hba.conf: the local stack trusts loopback (see
-- CONTRIBUTING.md for why); a production server gives each role a password, set by the
-- operator (ALTER ROLE ... PASSWORD) and handed to each service in its own Secret.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ticketing_catalog', 'ticketing_booking', 'ticketing_cdc']
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

-- Logical replication: creating, reading and dropping the slot.
ALTER ROLE ticketing_cdc LOGIN REPLICATION;

-- catalog_svc
GRANT SELECT, INSERT, UPDATE ON venues, performers, events TO ticketing_catalog;
GRANT SELECT ON tickets TO ticketing_catalog;
GRANT INSERT (event_id, section, row_label, seat_label, price_minor, currency)
    ON tickets TO ticketing_catalog;
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO ticketing_catalog;

-- booking_svc. SELECT ... FOR UPDATE on tickets needs UPDATE on one column, which it has.
GRANT SELECT ON venues, events TO ticketing_booking;
GRANT SELECT ON tickets TO ticketing_booking;
GRANT UPDATE (status, holder_user_id, hold_expire_time, booking_id) ON tickets
    TO ticketing_booking;
GRANT SELECT, INSERT, UPDATE ON bookings, booking_tickets, payments TO ticketing_booking;
GRANT SELECT, INSERT, UPDATE ON idempotency_keys TO ticketing_booking;

-- The hold functions run with the caller's rights; only booking sells.
REVOKE EXECUTE ON FUNCTION hold_tickets(text, uuid[], interval, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_tickets(text, uuid[], interval, uuid) TO ticketing_booking;
REVOKE EXECUTE ON FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid)
    TO ticketing_booking;

-- cdc_worker: the snapshot and the documents it re-reads.
GRANT SELECT ON venues, performers, events, tickets TO ticketing_cdc;
