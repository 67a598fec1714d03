-- A hold in one round trip (issue 14): the user's lock, the order's facts, every check and the
-- conditional update in one call, so a reservation costs the service one statement instead of
-- four. Postgres still decides: the checks run after the user's advisory lock is granted (one
-- user's orders serialize, so the per-user cap holds under concurrency) and each statement of
-- a VOLATILE plpgsql function reads a fresh snapshot (READ COMMITTED), so the counts see every
-- order committed before the lock was granted. Seats are locked FOR UPDATE SKIP LOCKED and
-- re-checked with ticket_is_available before anything is written: a seat another buyer holds
-- or is taking right now is reported taken, and an order that cannot have all its seats
-- writes nothing.
--
-- The refusals come back as an outcome code with the facts the caller needs to explain them
-- (the rules' wording stays in booking_svc/domain.py):
--   HELD                 held_* describe every seat of the order
--   TICKET_NOT_FOUND     some id is not a ticket
--   MIXED_EVENTS         the tickets belong to more than one event
--   SALE_NOT_OPEN        now() < on_sale_time
--   SALE_CLOSED          now() >= start_time
--   NOT_ADMITTED         a queue-enabled event, and admitted_event is not this event
--   LIMIT_EXCEEDED       already + cardinality(ids) > max_tickets_per_user
--   TICKET_UNAVAILABLE   held_ids are the seats that could be had; nothing was written
--
-- admitted_event is the event of the caller's admission token, already verified (signature,
-- audience, expiry, user) by the service, or NULL when there is none.
CREATE FUNCTION hold_tickets(
    p_user text,
    p_ids uuid[],
    p_duration interval,
    p_admitted_event uuid,
    OUT outcome text,
    OUT event_id uuid,
    OUT on_sale_time timestamptz,
    OUT start_time timestamptz,
    OUT queue_enabled boolean,
    OUT max_tickets_per_user integer,
    OUT already integer,
    OUT held_ids uuid[],
    OUT held_prices bigint[],
    OUT held_currencies text[],
    OUT held_expire_times timestamptz[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_tickets integer;
    found_events integer;
    claimable uuid[];
BEGIN
    -- A hold needs no flush to disk before the buyer hears of it: one lost in a crash was
    -- never sold, and confirm re-checks the hold before taking money. Transaction-local.
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('user|' || p_user, 0));

    SELECT count(*), count(DISTINCT t.event_id), min(t.event_id::text)::uuid
      INTO found_tickets, found_events, event_id
      FROM tickets t WHERE t.id = ANY(p_ids);
    IF found_tickets < cardinality(p_ids) THEN
        outcome := 'TICKET_NOT_FOUND';
        RETURN;
    END IF;
    IF found_events <> 1 THEN
        outcome := 'MIXED_EVENTS';
        RETURN;
    END IF;

    SELECT e.on_sale_time, e.start_time, e.queue_enabled, e.max_tickets_per_user
      INTO on_sale_time, start_time, queue_enabled, max_tickets_per_user
      FROM events e WHERE e.id = event_id;
    IF now() < on_sale_time THEN
        outcome := 'SALE_NOT_OPEN';
        RETURN;
    END IF;
    IF now() >= start_time THEN
        outcome := 'SALE_CLOSED';
        RETURN;
    END IF;
    IF queue_enabled AND p_admitted_event IS DISTINCT FROM event_id THEN
        outcome := 'NOT_ADMITTED';
        RETURN;
    END IF;

    -- Two index lookups (the user's live holds; the user's confirmed bookings), never a scan
    -- of the event's tickets. The order's own seats, if already the user's, are not counted.
    SELECT (SELECT count(*) FROM tickets m
             WHERE m.holder_user_id = p_user AND m.event_id = hold_tickets.event_id
               AND m.status = 'held' AND m.hold_expire_time > now()
               AND NOT (m.id = ANY(p_ids)))
           + (SELECT count(*) FROM bookings b
              JOIN booking_tickets bt ON bt.booking_id = b.id
              WHERE b.user_id = p_user AND b.event_id = hold_tickets.event_id
                AND b.status = 'confirmed')
      INTO already;
    IF already + cardinality(p_ids) > max_tickets_per_user THEN
        outcome := 'LIMIT_EXCEEDED';
        RETURN;
    END IF;

    -- A live hold of the same user counts as available (and keeps its expiry).
    SELECT coalesce(array_agg(c.id), '{}') INTO claimable FROM (
        SELECT t.id FROM tickets t
         WHERE t.id = ANY(p_ids) AND t.event_id = hold_tickets.event_id
           AND (ticket_is_available(t.status, t.hold_expire_time)
                OR (t.status = 'held' AND t.holder_user_id = p_user
                    AND t.hold_expire_time > now()))
         ORDER BY t.id
         FOR UPDATE SKIP LOCKED
    ) c;
    IF cardinality(claimable) < cardinality(p_ids) THEN
        outcome := 'TICKET_UNAVAILABLE';
        held_ids := claimable;
        RETURN;
    END IF;

    WITH held AS (
        UPDATE tickets t SET
            hold_expire_time = CASE
                WHEN t.status = 'held' AND t.holder_user_id = p_user
                     AND t.hold_expire_time > now() THEN t.hold_expire_time
                ELSE now() + p_duration END,
            booking_id = CASE
                WHEN t.status = 'held' AND t.holder_user_id = p_user
                     AND t.hold_expire_time > now() THEN t.booking_id END,
            status = 'held',
            holder_user_id = p_user
        WHERE t.id = ANY(claimable)
        RETURNING t.id, t.price_minor, t.currency, t.hold_expire_time
    )
    SELECT array_agg(h.id ORDER BY h.id), array_agg(h.price_minor ORDER BY h.id),
           array_agg(h.currency::text ORDER BY h.id),
           array_agg(h.hold_expire_time ORDER BY h.id)
      INTO held_ids, held_prices, held_currencies, held_expire_times
      FROM held h;
    outcome := 'HELD';
END;
$$;
