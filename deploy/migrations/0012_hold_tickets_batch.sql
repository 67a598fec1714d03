-- Group commit of holds (issue 14): the holds that a booking process has in hand at one moment
-- (concurrent buyers of a hot event) are sent to Postgres as one statement and committed as one
-- transaction, instead of one round trip and one commit each.
--
-- Every order is still decided on its own by hold_tickets (migration 0006), called once per
-- order inside this function: the order's user lock, its checks (tickets found, one event, the
-- sale window, admission, the per-user cap) and its conditional update over rows locked
-- FOR UPDATE SKIP LOCKED. Each answer is the order's own (req is its index in the arrays), so a
-- buyer hears only about their own seats. Within the batch the orders run one after the other
-- and each statement sees what the earlier ones wrote: two orders of the batch for one seat
-- cannot both have it, and two orders of one user are counted together against the cap.
--
-- The users' advisory locks are held until the batch commits, so they are taken in one global
-- order (the lock key, then the position in the batch): two batches that share users wait for
-- each other instead of deadlocking, and a single hold_tickets or hold_best_available call holds
-- only one such lock. Seats are never waited for (SKIP LOCKED), so no cycle goes through rows.
--
-- The orders arrive as parallel arrays: p_users[i] and p_admitted[i] (the event of the order's
-- verified admission token, or NULL) for order i, whose p_counts[i] ticket ids follow the
-- previous orders' in p_ids.
CREATE FUNCTION hold_tickets_batch(
    p_users text[],
    p_counts integer[],
    p_ids uuid[],
    p_duration interval,
    p_admitted uuid[]
)
RETURNS TABLE (
    req integer,
    outcome text,
    event_id uuid,
    on_sale_time timestamptz,
    start_time timestamptz,
    queue_enabled boolean,
    max_tickets_per_user integer,
    already integer,
    held_ids uuid[],
    held_prices bigint[],
    held_currencies text[],
    held_expire_times timestamptz[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    o record;
BEGIN
    IF cardinality(p_users) <> cardinality(p_counts)
       OR cardinality(p_users) <> cardinality(p_admitted)
       OR (SELECT coalesce(sum(c), 0) FROM unnest(p_counts) c) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'hold_tickets_batch: % users, % counts, % admissions, % ids',
            cardinality(p_users), cardinality(p_counts), cardinality(p_admitted),
            cardinality(p_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR o IN
        SELECT b.i, b.usr, b.n, b.last - b.n + 1 AS first
          FROM (
                SELECT u.i::integer AS i, u.usr, u.n,
                       (sum(u.n) OVER (ORDER BY u.i))::integer AS last
                  FROM unnest(p_users, p_counts) WITH ORDINALITY AS u(usr, n, i)
               ) b
         ORDER BY hashtextextended('user|' || b.usr, 0), b.i
    LOOP
        RETURN QUERY
            SELECT o.i, h.outcome, h.event_id, h.on_sale_time, h.start_time, h.queue_enabled,
                   h.max_tickets_per_user, h.already, h.held_ids, h.held_prices,
                   h.held_currencies, h.held_expire_times
              FROM hold_tickets(o.usr, p_ids[o.first:o.first + o.n - 1], p_duration,
                                p_admitted[o.i]) h;
    END LOOP;
END;
$$;

-- Like hold_tickets: the caller's rights, and only booking may hold.
REVOKE EXECUTE ON FUNCTION hold_tickets_batch(text[], integer[], uuid[], interval, uuid[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_tickets_batch(text[], integer[], uuid[], interval, uuid[])
    TO ticketing_booking;

-- The same for "best available" orders (hold_best_available, migrations 0007 and 0010): each
-- order picks its block on its own, after the orders before it in the batch took theirs (their
-- seats are held by then, so the blocks are disjoint), with its user lock, checks and
-- seats_remaining; p_events[i], p_quantities[i], p_tiers[i], p_sections[i] (empty: any) and
-- p_admitted[i] are order i's.
CREATE FUNCTION hold_best_available_batch(
    p_users text[],
    p_events uuid[],
    p_quantities integer[],
    p_tiers text[],
    p_sections text[],
    p_duration interval,
    p_admitted uuid[]
)
RETURNS TABLE (
    req integer,
    outcome text,
    event_id uuid,
    on_sale_time timestamptz,
    start_time timestamptz,
    queue_enabled boolean,
    max_tickets_per_user integer,
    already integer,
    held_ids uuid[],
    held_prices bigint[],
    held_currencies text[],
    held_expire_times timestamptz[],
    seats_remaining integer
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    o record;
BEGIN
    IF cardinality(p_users) <> cardinality(p_events)
       OR cardinality(p_users) <> cardinality(p_quantities)
       OR cardinality(p_users) <> cardinality(p_tiers)
       OR cardinality(p_users) <> cardinality(p_sections)
       OR cardinality(p_users) <> cardinality(p_admitted) THEN
        RAISE EXCEPTION 'hold_best_available_batch: arrays of different lengths'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR o IN
        SELECT u.i::integer AS i, u.usr
          FROM unnest(p_users) WITH ORDINALITY AS u(usr, i)
         ORDER BY hashtextextended('user|' || u.usr, 0), u.i
    LOOP
        RETURN QUERY
            SELECT o.i, h.outcome, h.event_id, h.on_sale_time, h.start_time, h.queue_enabled,
                   h.max_tickets_per_user, h.already, h.held_ids, h.held_prices,
                   h.held_currencies, h.held_expire_times, h.seats_remaining
              FROM hold_best_available(o.usr, p_events[o.i], p_quantities[o.i], p_tiers[o.i],
                                       p_sections[o.i], p_duration, p_admitted[o.i]) h;
    END LOOP;
END;
$$;

REVOKE EXECUTE ON FUNCTION hold_best_available_batch(
    text[], uuid[], integer[], text[], text[], interval, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_best_available_batch(
    text[], uuid[], integer[], text[], text[], interval, uuid[]) TO ticketing_booking;
