-- "Best available" proposed by the booking process, decided by Postgres (issue 12): a booking
-- process picks a block from its picture of the event's free seats and holds exactly those
-- ticket ids in the same group-committed statement as single-seat holds. This is that
-- statement: hold_tickets_batch (migration 0012) with one more array, p_picked. An order with
-- p_picked[i] false is decided by hold_tickets exactly as in hold_tickets_batch. An order with
-- p_picked[i] true is a proposal for new seats: hold_tickets counts a live hold of the same
-- user as available (a retried ReserveTicket keeps its seats), but a proposed block that
-- contains seats the user holds already would hand the buyer their own seats as new ones. So,
-- under the user's advisory lock (taken here first, in the batch's order; hold_tickets takes
-- it again, which a transaction-level lock allows), such an order is refused as
-- TICKET_UNAVAILABLE with held_ids the seats of the order that are not the user's, and
-- nothing is written; otherwise hold_tickets decides it.
--
-- Same arguments as hold_tickets_batch otherwise, same answers (req is the order's index),
-- same lock order (the user's lock key, then the position in the batch), same grants.
CREATE OR REPLACE FUNCTION hold_picked_seats_batch(
    p_users text[],
    p_counts integer[],
    p_ids uuid[],
    p_duration interval,
    p_admitted uuid[],
    p_picked boolean[]
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
    ids uuid[];
    mine uuid[];
BEGIN
    IF cardinality(p_users) <> cardinality(p_counts)
       OR cardinality(p_users) <> cardinality(p_admitted)
       OR cardinality(p_users) <> cardinality(p_picked)
       OR (SELECT coalesce(sum(c), 0) FROM unnest(p_counts) c) <> cardinality(p_ids) THEN
        RAISE EXCEPTION 'hold_picked_seats_batch: % users, % counts, % admissions, % picks, % ids',
            cardinality(p_users), cardinality(p_counts), cardinality(p_admitted),
            cardinality(p_picked), cardinality(p_ids)
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
        ids := p_ids[o.first:o.first + o.n - 1];
        IF p_picked[o.i] THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('user|' || o.usr, 0));
            SELECT coalesce(array_agg(t.id), '{}') INTO mine FROM tickets t
             WHERE t.id = ANY(ids) AND t.status = 'held' AND t.holder_user_id = o.usr
               AND t.hold_expire_time > now();
            IF cardinality(mine) > 0 THEN
                RETURN QUERY
                    SELECT o.i, 'TICKET_UNAVAILABLE'::text, NULL::uuid, NULL::timestamptz,
                           NULL::timestamptz, NULL::boolean, NULL::integer, NULL::integer,
                           ARRAY(SELECT x FROM unnest(ids) x WHERE x <> ALL(mine)),
                           NULL::bigint[], NULL::text[], NULL::timestamptz[];
                CONTINUE;
            END IF;
        END IF;
        RETURN QUERY
            SELECT o.i, h.outcome, h.event_id, h.on_sale_time, h.start_time, h.queue_enabled,
                   h.max_tickets_per_user, h.already, h.held_ids, h.held_prices,
                   h.held_currencies, h.held_expire_times
              FROM hold_tickets(o.usr, ids, p_duration, p_admitted[o.i]) h;
    END LOOP;
END;
$$;

REVOKE EXECUTE ON FUNCTION hold_picked_seats_batch(
    text[], integer[], uuid[], interval, uuid[], boolean[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_picked_seats_batch(
    text[], integer[], uuid[], interval, uuid[], boolean[]) TO ticketing_booking;
