-- WatchAvailability's feed (issue 12): every committed change of a ticket's state is
-- announced on the channel ticket_availability, so each catalog process keeps one LISTEN
-- connection and fans the changes out to all the watchers of an event.
--
-- Why LISTEN/NOTIFY: a notification is delivered only when (and only if) its transaction
-- commits, in commit order, and every writer of tickets (holds, best available, confirms,
-- releases, cancellations, operators) is covered by one trigger without any of them changing.
-- Logical decoding would need a replication slot per catalog process; publishing to Redis
-- from booking would miss writes made by other paths and could announce a hold whose
-- transaction then rolled back.
--
-- One statement-level trigger (transition tables), not one per row: a statement holding 8
-- seats sends one notification. The payload is "<event id> <ticket id>,<ticket id>,..." with
-- at most 150 ids (well under NOTIFY's 8000 bytes); the catalog reads those tickets' current
-- state itself, so the payload never has to be trusted for the state. Notifications with the
-- same payload in one transaction are folded into one by Postgres.
--
-- A hold that lapses is not a write: nothing is announced. The catalog keeps each held
-- ticket's hold_expire_time and reads the ticket again when it is due.

CREATE FUNCTION tickets_notify_availability() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    batch record;
BEGIN
    FOR batch IN
        SELECT n.event_id, string_agg(n.id::text, ',') AS ids
          FROM (
                SELECT n.event_id, n.id,
                       (row_number() OVER (PARTITION BY n.event_id ORDER BY n.id) - 1) / 150
                           AS chunk
                  FROM new_rows n JOIN old_rows o ON o.id = n.id
                 WHERE n.status IS DISTINCT FROM o.status
                    OR n.hold_expire_time IS DISTINCT FROM o.hold_expire_time
               ) n
         GROUP BY n.event_id, n.chunk
    LOOP
        PERFORM pg_notify('ticket_availability', batch.event_id::text || ' ' || batch.ids);
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER tickets_notify_availability AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_notify_availability();
