-- "Best available" in batches (0012) meets seated-only orders (0014): 0014 replaced
-- hold_best_available(..., p_admitted_event) by the signature with p_seated_only, so the batch
-- function of 0012, which calls the old one, is replaced by one that passes each order's
-- p_seated_only[i] on. Same checks, order and grants as 0012.

DROP FUNCTION hold_best_available_batch(text[], uuid[], integer[], text[], text[], interval, uuid[]);

CREATE FUNCTION hold_best_available_batch(
    p_users text[],
    p_events uuid[],
    p_quantities integer[],
    p_tiers text[],
    p_sections text[],
    p_duration interval,
    p_admitted uuid[],
    p_seated_only boolean[]
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
       OR cardinality(p_users) <> cardinality(p_admitted)
       OR cardinality(p_users) <> cardinality(p_seated_only) THEN
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
                                       p_sections[o.i], p_duration, p_admitted[o.i],
                                       p_seated_only[o.i]) h;
    END LOOP;
END;
$$;

REVOKE EXECUTE ON FUNCTION hold_best_available_batch(
    text[], uuid[], integer[], text[], text[], interval, uuid[], boolean[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_best_available_batch(
    text[], uuid[], integer[], text[], text[], interval, uuid[], boolean[]) TO ticketing_booking;
