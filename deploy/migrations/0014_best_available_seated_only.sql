-- "Best available", seated only (issue 12): hold_best_available (0010) gains p_seated_only.
-- A seated-only order passes standing sections over (and does not count their places in
-- seats_remaining); one that names a standing section is refused with STANDING_SECTION
-- (booking answers INVALID_ARGUMENT naming the field "section"). A new argument is a new
-- signature: the old function goes, and the grants of 0008 are given again.

DROP FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid);

CREATE FUNCTION hold_best_available(
    p_user text,
    p_event uuid,
    p_quantity integer,
    p_tier text,
    p_section text,
    p_duration interval,
    p_admitted_event uuid,
    p_seated_only boolean,
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
    OUT held_expire_times timestamptz[],
    OUT seats_remaining integer
)
-- Generic plans: the statements run once per row of the venue, and planning each afresh
-- (custom plans) costs several times their execution.
LANGUAGE plpgsql VOLATILE SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_seat_map jsonb;
    seat_row record;
    candidate record;
    got uuid[];
    lapsed uuid[];
    seen_candidate boolean;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pg_advisory_xact_lock(hashtextextended('user|' || p_user, 0));

    SELECT e.id, e.on_sale_time, e.start_time, e.queue_enabled, e.max_tickets_per_user,
           v.seat_map
      INTO event_id, on_sale_time, start_time, queue_enabled, max_tickets_per_user, v_seat_map
      FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = p_event;
    IF NOT FOUND THEN
        outcome := 'EVENT_NOT_FOUND';
        RETURN;
    END IF;
    IF p_quantity > max_tickets_per_user THEN
        outcome := 'QUANTITY_OVER_LIMIT';
        RETURN;
    END IF;
    IF p_tier IS NOT NULL AND NOT EXISTS (
        SELECT FROM jsonb_array_elements(v_seat_map -> 'sections') s
         WHERE s ->> 'price_tier' = p_tier) THEN
        outcome := 'UNKNOWN_PRICE_TIER';
        RETURN;
    END IF;
    IF p_section IS NOT NULL AND NOT EXISTS (
        SELECT FROM jsonb_array_elements(v_seat_map -> 'sections') s
         WHERE s ->> 'name' = p_section AND (p_tier IS NULL OR s ->> 'price_tier' = p_tier)) THEN
        outcome := 'UNKNOWN_SECTION';
        RETURN;
    END IF;
    IF p_seated_only AND p_section IS NOT NULL AND EXISTS (
        SELECT FROM jsonb_array_elements(v_seat_map -> 'sections') s
         WHERE s ->> 'name' = p_section AND s ? 'standing_capacity') THEN
        outcome := 'STANDING_SECTION';
        RETURN;
    END IF;
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

    SELECT (SELECT count(*) FROM tickets m
             WHERE m.holder_user_id = p_user AND m.event_id = p_event
               AND m.status = 'held' AND m.hold_expire_time > now())
           + (SELECT count(*) FROM bookings b
              JOIN booking_tickets bt ON bt.booking_id = b.id
              WHERE b.user_id = p_user AND b.event_id = p_event AND b.status = 'confirmed')
      INTO already;
    IF already + p_quantity > max_tickets_per_user THEN
        outcome := 'LIMIT_EXCEEDED';
        RETURN;
    END IF;

    FOR attempt IN 1..5 LOOP
        seen_candidate := false;
        -- Seats whose hold lapsed are available too (expiry is implicit); usually none.
        SELECT coalesce(array_agg(t.id), '{}') INTO lapsed FROM tickets t
         WHERE t.event_id = p_event AND t.status = 'held' AND t.hold_expire_time <= now();
        -- Rows in best order; a standing section is one pseudo-row '' in its place.
        FOR seat_row IN
            SELECT s.sec ->> 'name' AS section, r.label AS row_label
              FROM jsonb_array_elements(v_seat_map -> 'sections') WITH ORDINALITY AS s(sec, ord)
             CROSS JOIN LATERAL (
                   SELECT rw ->> 'label' AS label, ord
                     FROM jsonb_array_elements(s.sec -> 'rows') WITH ORDINALITY AS x(rw, ord)
                   UNION ALL
                   SELECT '', 0 WHERE s.sec ? 'standing_capacity' AND NOT p_seated_only
             ) r
             WHERE (p_tier IS NULL OR s.sec ->> 'price_tier' = p_tier)
               AND (p_section IS NULL OR s.sec ->> 'name' = p_section)
             ORDER BY s.ord, r.ord
        LOOP
            IF seat_row.row_label = '' THEN
                -- Standing: any p_quantity free places, lowest numbers first, skipping the
                -- ones another buyer is locking right now.
                SELECT coalesce(array_agg(x.id), '{}') INTO got FROM (
                    SELECT t.id FROM tickets t
                     WHERE t.event_id = p_event AND t.section = seat_row.section
                       AND t.row_label = ''
                       AND (t.status = 'available' OR t.id = ANY(lapsed))
                       AND ticket_is_available(t.status, t.hold_expire_time)
                     ORDER BY t.seat_label::integer
                     LIMIT p_quantity
                       FOR UPDATE SKIP LOCKED
                ) x;
                IF cardinality(got) = p_quantity THEN
                    WITH held AS (
                        UPDATE tickets t SET status = 'held', holder_user_id = p_user,
                               hold_expire_time = now() + p_duration, booking_id = NULL
                         WHERE t.id = ANY(got)
                        RETURNING t.id, t.seat_label, t.price_minor, t.currency,
                                  t.hold_expire_time
                    )
                    SELECT array_agg(h.id ORDER BY h.seat_label::integer),
                           array_agg(h.price_minor ORDER BY h.seat_label::integer),
                           array_agg(h.currency::text ORDER BY h.seat_label::integer),
                           array_agg(h.hold_expire_time ORDER BY h.seat_label::integer)
                      INTO held_ids, held_prices, held_currencies, held_expire_times
                      FROM held h;
                    outcome := 'HELD';
                    RETURN;
                END IF;
                -- Short because others hold locks on enough free places: try again later.
                IF (SELECT count(*) FROM tickets t
                     WHERE t.event_id = p_event AND t.section = seat_row.section
                       AND t.row_label = ''
                       AND (t.status = 'available' OR t.id = ANY(lapsed))
                       AND ticket_is_available(t.status, t.hold_expire_time)) >= p_quantity THEN
                    seen_candidate := true;
                END IF;
                CONTINUE;
            END IF;
            -- One row's free runs, from a fresh snapshot (tickets_free_idx, plus lapsed holds).
            FOR candidate IN
                WITH free AS (
                    SELECT t.id, t.seat_label::integer AS n
                      FROM tickets t
                     WHERE t.event_id = p_event AND t.section = seat_row.section
                       AND t.row_label = seat_row.row_label AND t.status = 'available'
                       AND t.seat_label ~ '^[0-9]{1,9}$'
                    UNION ALL
                    SELECT t.id, t.seat_label::integer AS n
                      FROM tickets t
                     WHERE t.id = ANY(lapsed) AND t.section = seat_row.section
                       AND t.row_label = seat_row.row_label
                       AND ticket_is_available(t.status, t.hold_expire_time)
                       AND t.seat_label ~ '^[0-9]{1,9}$'
                ), runs AS (
                    SELECT f.id, f.n, f.n - row_number() OVER (ORDER BY f.n) AS grp FROM free f
                ), blocks AS (
                    SELECT r.n, min(r.n) OVER run AS run_start, max(r.n) OVER run AS run_end,
                           array_agg(r.id) OVER (PARTITION BY r.grp ORDER BY r.n
                                                 ROWS BETWEEN CURRENT ROW
                                                      AND p_quantity - 1 FOLLOWING) AS ids
                      FROM runs r
                    WINDOW run AS (PARTITION BY r.grp)
                )
                SELECT b.ids FROM blocks b
                 WHERE b.n + p_quantity - 1 <= b.run_end
                   AND ((b.n - b.run_start) % p_quantity = 0 OR b.n = b.run_end - p_quantity + 1)
                 ORDER BY b.n
            LOOP
                seen_candidate := true;
                SELECT coalesce(array_agg(x.id), '{}') INTO got FROM (
                    SELECT t.id FROM tickets t
                     WHERE t.id = ANY(candidate.ids)
                       AND ticket_is_available(t.status, t.hold_expire_time)
                       FOR UPDATE SKIP LOCKED
                ) x;
                IF cardinality(got) = p_quantity THEN
                    WITH held AS (
                        UPDATE tickets t SET status = 'held', holder_user_id = p_user,
                               hold_expire_time = now() + p_duration, booking_id = NULL
                         WHERE t.id = ANY(got)
                        RETURNING t.id, t.seat_label, t.price_minor, t.currency,
                                  t.hold_expire_time
                    )
                    SELECT array_agg(h.id ORDER BY h.seat_label::integer),
                           array_agg(h.price_minor ORDER BY h.seat_label::integer),
                           array_agg(h.currency::text ORDER BY h.seat_label::integer),
                           array_agg(h.hold_expire_time ORDER BY h.seat_label::integer)
                      INTO held_ids, held_prices, held_currencies, held_expire_times
                      FROM held h;
                    outcome := 'HELD';
                    RETURN;
                END IF;
            END LOOP;
        END LOOP;
        EXIT WHEN NOT seen_candidate;
        PERFORM pg_sleep(0.005 * attempt);
    END LOOP;

    SELECT count(*) INTO seats_remaining
      FROM tickets t
     WHERE t.event_id = p_event
       AND t.section IN (
           SELECT s ->> 'name' FROM jsonb_array_elements(v_seat_map -> 'sections') s
            WHERE (p_tier IS NULL OR s ->> 'price_tier' = p_tier)
              AND (p_section IS NULL OR s ->> 'name' = p_section)
              AND NOT (p_seated_only AND s ? 'standing_capacity'))
       AND ticket_is_available(t.status, t.hold_expire_time);
    outcome := CASE WHEN seen_candidate THEN 'TICKET_UNAVAILABLE' ELSE 'NO_ADJACENT_SEATS' END;
END;
$$;

REVOKE EXECUTE ON FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid, boolean)
    TO ticketing_booking;
