-- A confirm in one round trip per phase (issue 14): the database work before the charge and the
-- sale after it are one call each, instead of about eight and six statements. The phases keep
-- their order, which is what makes "no payment without a ticket or a refund" true:
--   1. confirm_begin: the tickets checked and locked, the pending booking and its payment attempt
--      recorded (committed) before the card is charged;
--   2. the charge (outside any transaction), its outcome recorded in one UPDATE (the service's
--      own statement, committed before the sale is tried, so a retry never asks again);
--   3. confirm_sell: the held seats turned into sold ones, all or none, if they are still this
--      booking's holds; otherwise the service refunds.
-- Postgres still decides: both functions lock the rows they decide on, and each statement of a
-- VOLATILE plpgsql function reads a fresh snapshot (READ COMMITTED). Both take the tickets'
-- row locks before the booking's (confirm_sell locks the booking FOR NO KEY UPDATE, which does
-- not block the KEY SHARE a new payment row takes on it), so a confirm and a sale of the same
-- seats queue on the tickets instead of deadlocking.

-- Phase 1. Outcomes (the rules' wording stays in booking_svc/domain.py):
--   FINISHED  the request_id names a booking that is no longer pending: booking_id is it, the
--             caller replays it
--   REFUSED   not payable (a ticket missing, not this user's live hold, mixed currencies):
--             nothing was written; ticket_* describe the tickets as they are, for the reason
--   PAYABLE   booking_id, payment_* the attempt to charge (payment_status 'succeeded': the
--             charge was taken already and recorded, so the caller must not charge again)
-- Which booking a payable confirm pays for:
--   * the booking of (user, request_id), if the request_id names a pending one (a retry);
--   * else the pending booking the tickets point to, if it is this user's, covers exactly
--     these tickets and was made under the same request_id (or neither has one), or has a
--     charge recorded as taken already (it is sold, never charged twice);
--   * else a new pending booking, which the tickets then point to. A booking left behind by
--     another request_id can no longer sell these seats: if its own charge goes through, its
--     sale finds the seats gone and it is refunded (so two confirms of one hold under two
--     request ids keep exactly one charge).
-- The payment attempt is the row of idempotency key 'booking-<booking id>-<payment method>'
-- (booking_svc.domain.payment_idempotency_key, which the service checks it against), the same
-- row again for the same key.
CREATE FUNCTION confirm_begin(
    p_user text,
    p_ids uuid[],
    p_request_id text,
    p_payment_method text,
    OUT outcome text,
    OUT event_id uuid,
    OUT booking_id uuid,
    OUT payment_id uuid,
    OUT payment_key text,
    OUT provider_payment_id text,
    OUT payment_status text,
    OUT total_minor bigint,
    OUT currency text,
    OUT ticket_ids uuid[],
    OUT ticket_events uuid[],
    OUT ticket_statuses text[],
    OUT ticket_holders text[],
    OUT ticket_expire_times timestamptz[],
    OUT ticket_prices bigint[],
    OUT ticket_currencies text[]
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    found_booking uuid;
    found_status text;
    found_event uuid;
    pointed uuid[];
    candidate uuid;
    candidate_request text;
    candidate_paid boolean;
    paid boolean := false;
BEGIN
    -- The tickets, locked: concurrent confirms of the same seats go one after the other from
    -- here, each seeing what the one before it committed.
    SELECT coalesce(array_agg(t.id ORDER BY t.id), '{}'),
           coalesce(array_agg(t.event_id ORDER BY t.id), '{}'),
           coalesce(array_agg(t.status ORDER BY t.id), '{}'),
           coalesce(array_agg(t.holder_user_id ORDER BY t.id), '{}'),
           coalesce(array_agg(t.hold_expire_time ORDER BY t.id), '{}'),
           coalesce(array_agg(t.price_minor ORDER BY t.id), '{}'),
           coalesce(array_agg(t.currency::text ORDER BY t.id), '{}'),
           coalesce(array_agg(DISTINCT t.booking_id), '{}'),
           sum(t.price_minor)
      INTO ticket_ids, ticket_events, ticket_statuses, ticket_holders, ticket_expire_times,
           ticket_prices, ticket_currencies, pointed, total_minor
      FROM (SELECT * FROM tickets WHERE id = ANY(p_ids) ORDER BY id FOR UPDATE) t;
    event_id := ticket_events[1];
    currency := ticket_currencies[1];

    IF p_request_id IS NOT NULL THEN
        SELECT b.id, b.status, b.event_id INTO found_booking, found_status, found_event
          FROM bookings b WHERE b.user_id = p_user AND b.request_id = p_request_id;
        IF FOUND THEN
            booking_id := found_booking;
            event_id := found_event;
            IF found_status <> 'pending' THEN
                outcome := 'FINISHED';
                RETURN;
            END IF;
            paid := EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = confirm_begin.booking_id
                             AND p.status = 'succeeded');
        END IF;
    END IF;

    IF booking_id IS NULL AND cardinality(pointed) = 1 THEN
        SELECT b.id, b.request_id,
               EXISTS (SELECT 1 FROM payments p WHERE p.booking_id = b.id
                        AND p.status = 'succeeded')
          INTO candidate, candidate_request, candidate_paid
          FROM bookings b
         WHERE b.id = pointed[1] AND b.user_id = p_user AND b.status = 'pending'
           AND (SELECT array_agg(bt.ticket_id ORDER BY bt.ticket_id) FROM booking_tickets bt
                 WHERE bt.booking_id = b.id) = ticket_ids;
        IF candidate IS NOT NULL
           AND (candidate_request IS NOT DISTINCT FROM p_request_id OR candidate_paid) THEN
            booking_id := candidate;
            paid := candidate_paid;
        END IF;
    END IF;

    -- Only the holder pays, only for live holds (booking_svc.domain.ensure_payable); a charge
    -- taken already is settled instead (sold, or refunded if the seats are gone).
    IF NOT paid AND (
        cardinality(ticket_ids) < cardinality(p_ids)
        OR EXISTS (SELECT 1 FROM unnest(ticket_statuses, ticket_holders, ticket_expire_times)
                          AS x(status, holder, expire)
                    WHERE x.status <> 'held' OR x.holder IS DISTINCT FROM p_user
                       OR x.expire IS NULL OR x.expire <= now())
        OR (SELECT count(DISTINCT c) FROM unnest(ticket_currencies) c) <> 1
    ) THEN
        outcome := 'REFUSED';
        booking_id := NULL;
        RETURN;
    END IF;

    IF booking_id IS NULL THEN
        INSERT INTO bookings (user_id, event_id, status, total_minor, currency, request_id)
        VALUES (p_user, confirm_begin.event_id, 'pending', confirm_begin.total_minor,
                confirm_begin.currency, p_request_id)
        RETURNING id INTO booking_id;
        INSERT INTO booking_tickets (booking_id, ticket_id)
        SELECT confirm_begin.booking_id, x FROM unnest(ticket_ids) x;
        UPDATE tickets t SET booking_id = confirm_begin.booking_id WHERE t.id = ANY(ticket_ids);
    END IF;

    payment_key := 'booking-' || booking_id || '-' || p_payment_method;
    INSERT INTO payments (booking_id, idempotency_key, amount_minor, currency, status)
    VALUES (confirm_begin.booking_id, payment_key, confirm_begin.total_minor,
            confirm_begin.currency, 'requires_action')
    ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
    RETURNING id, payments.provider_payment_id, status
      INTO payment_id, provider_payment_id, payment_status;
    outcome := 'PAYABLE';
END;
$$;

-- Phase 3: sell the booking's seats if they are still its holds, all or none. Returns sold and
-- wanted (sold < wanted: the hold was lost, nothing was written, the caller refunds) and the
-- booking as it is now, in booking_svc/adapters/postgres.py's _BOOKING_SELECT shape (b_* NULL
-- for a booking that does not exist). A confirmed booking is sold already; a booking neither
-- pending nor confirmed sells nothing.
CREATE FUNCTION confirm_sell(p_booking uuid)
RETURNS TABLE (
    sold integer,
    wanted integer,
    b_id text,
    b_user_id text,
    b_event_id text,
    b_status text,
    b_total_minor bigint,
    b_currency text,
    b_ticket_ids text[],
    b_create_time timestamptz,
    b_confirm_time timestamptz,
    p_id text,
    p_provider_payment_id text,
    p_status text,
    p_refund_id text,
    p_failure_reason text
)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    owner text;
    current_status text;
    n_sold integer := 0;
    n_wanted integer := 0;
    ids uuid[];
BEGIN
    SELECT coalesce(array_agg(bt.ticket_id ORDER BY bt.ticket_id), '{}') INTO ids
      FROM booking_tickets bt WHERE bt.booking_id = p_booking;
    n_wanted := cardinality(ids);
    -- The seats first (the order confirm_begin locks in), then the booking.
    SELECT count(*) INTO n_sold FROM (
        SELECT 1 FROM tickets t WHERE t.id = ANY(ids) ORDER BY t.id FOR UPDATE
    ) locked;
    SELECT b.user_id, b.status INTO owner, current_status
      FROM bookings b WHERE b.id = p_booking FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 0, 0, NULL::text, NULL::text, NULL::text, NULL::text, NULL::bigint,
            NULL::text, NULL::text[], NULL::timestamptz, NULL::timestamptz, NULL::text,
            NULL::text, NULL::text, NULL::text, NULL::text;
        RETURN;
    END IF;
    IF current_status = 'confirmed' THEN
        n_sold := n_wanted;
    ELSIF current_status <> 'pending' THEN
        n_sold := 0;
    ELSE
        SELECT count(*) INTO n_sold FROM tickets t
         WHERE t.id = ANY(ids) AND t.status = 'held' AND t.holder_user_id = owner
           AND t.booking_id = p_booking;
        IF n_wanted > 0 AND n_sold = n_wanted THEN
            UPDATE tickets t SET status = 'booked', hold_expire_time = NULL
             WHERE t.id = ANY(ids);
            UPDATE bookings b SET status = 'confirmed', confirm_time = now()
             WHERE b.id = p_booking;
        END IF;
    END IF;
    RETURN QUERY
    SELECT n_sold, n_wanted, b.id::text, b.user_id, b.event_id::text, b.status, b.total_minor,
           b.currency::text, (SELECT array_agg(x::text ORDER BY x) FROM unnest(ids) x),
           b.create_time, b.confirm_time,
           p.id::text, p.provider_payment_id, p.status, p.refund_id, p.failure_reason
      FROM bookings b
      LEFT JOIN LATERAL (
          SELECT * FROM payments WHERE payments.booking_id = b.id
           ORDER BY payments.create_time DESC LIMIT 1
      ) p ON true
     WHERE b.id = p_booking;
END;
$$;

-- Like the hold functions: they run with the caller's rights and only booking may call them.
REVOKE EXECUTE ON FUNCTION confirm_begin(text, uuid[], text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION confirm_begin(text, uuid[], text, text) TO ticketing_booking;
REVOKE EXECUTE ON FUNCTION confirm_sell(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION confirm_sell(uuid) TO ticketing_booking;
