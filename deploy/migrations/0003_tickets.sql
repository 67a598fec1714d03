-- Tickets: one row per seat per event, and the single definition of "available".

CREATE TABLE tickets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Deleting an event takes its unsold tickets with it; a ticket that is part of a booking
    -- is referenced by booking_tickets (no cascade), so an event with bookings cannot be
    -- deleted at all.
    event_id uuid NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    -- section names a section of the venue's seat map, row_label one of its rows and
    -- seat_label the seat's number in that row (1-based, as text).
    section text NOT NULL CHECK (section <> ''),
    row_label text NOT NULL CHECK (row_label <> ''),
    seat_label text NOT NULL CHECK (seat_label <> ''),
    price_minor bigint NOT NULL CHECK (price_minor >= 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- The stored status. A hold expires without anybody writing: a 'held' row whose
    -- hold_expire_time has passed is available again. Read availability through
    -- ticket_is_available() / ticket_availability below, never from this column alone.
    status text NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'held', 'booked')),
    holder_user_id text,
    hold_expire_time timestamptz,
    -- Set when the ticket is sold; may already be set while held (a pending booking).
    -- The foreign key is added in 0004 together with the bookings table.
    booking_id uuid,
    -- Optimistic-concurrency version, bumped by the trigger on every update.
    version bigint NOT NULL DEFAULT 0,
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tickets_seat_key UNIQUE (event_id, section, row_label, seat_label),
    -- Which fields each status needs. 'available' carries no leftovers of an earlier hold or
    -- booking, so a released ticket cannot keep pointing at its former holder.
    -- (A CASE without ELSE yields NULL for other statuses, which passes; the status CHECK
    -- above already rejects those.)
    CONSTRAINT tickets_status_fields CHECK (
        CASE status
            WHEN 'available'
                THEN holder_user_id IS NULL AND hold_expire_time IS NULL AND booking_id IS NULL
            WHEN 'held'
                THEN holder_user_id IS NOT NULL AND hold_expire_time IS NOT NULL
            WHEN 'booked'
                THEN booking_id IS NOT NULL
        END
    )
);

-- Hot paths and the index each one uses:
--   * list an event's tickets, optionally one section, in seat order: tickets_seat_key
--     (event_id, section, row_label, seat_label) -- the unique constraint's own index.
--   * find available seats of an event (GetEvent's per-section availability, the seat
--     picker, "best available"): tickets_unsold_idx. It leaves out booked rows, so it shrinks
--     as an event sells out and "is anything left?" stays cheap on a nearly sold-out event.
--     The planner uses it for any query whose WHERE implies status <> 'booked', which the
--     availability predicate does (status = 'available' OR status = 'held' AND ...).
--   * a user's current holds (limits per user, "my cart"): tickets_holder_idx, partial on
--     'held', so it only ever holds the seats in somebody's cart.
--   * the tickets of a booking: tickets_booking_idx (also serves the foreign key).
CREATE INDEX tickets_unsold_idx ON tickets (event_id, section, row_label, seat_label)
    WHERE status <> 'booked';

CREATE INDEX tickets_holder_idx ON tickets (holder_user_id, event_id) WHERE status = 'held';

CREATE INDEX tickets_booking_idx ON tickets (booking_id) WHERE booking_id IS NOT NULL;

CREATE TRIGGER tickets_set_update_time_and_version BEFORE UPDATE ON tickets
    FOR EACH ROW EXECUTE FUNCTION set_update_time_and_version();

-- THE availability predicate. Expiry is implicit (no sweeper needed for correctness): a hold
-- counts only until hold_expire_time. Plain SQL, STABLE and not STRICT, so the planner inlines
-- it into the caller's query and can still use tickets_unsold_idx.
--
-- Writers use it in the conditional UPDATE that decides a sale, for example
--   UPDATE tickets SET status = 'held', holder_user_id = $user, hold_expire_time = $until
--   WHERE id = ANY($ids) AND ticket_is_available(status, hold_expire_time)
-- and compare the row count. Two writers racing for a seat serialize on the row lock; the
-- loser re-evaluates the WHERE against the winner's row and matches nothing. now() is the
-- transaction's start time: a long transaction sees a hold expire a little late, never
-- early, which errs on the safe side.
CREATE FUNCTION ticket_is_available(status text, hold_expire_time timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT status = 'available' OR (status = 'held' AND hold_expire_time <= now())
$$;

-- The status a reader should show: a lapsed hold reads as 'available'.
CREATE FUNCTION ticket_effective_status(status text, hold_expire_time timestamptz)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status = 'held' AND hold_expire_time <= now() THEN 'available'
        ELSE status
    END
$$;

-- Tickets as readers should see them. Filter with "is_available" (inlined to the predicate,
-- index-friendly) rather than "effective_status = 'available'" (a CASE, which no index
-- matches). holder_user_id and hold_expire_time are reported only while the hold is live.
CREATE VIEW ticket_availability AS
SELECT
    t.id,
    t.event_id,
    t.section,
    t.row_label,
    t.seat_label,
    t.price_minor,
    t.currency,
    t.status AS stored_status,
    ticket_effective_status(t.status, t.hold_expire_time) AS effective_status,
    ticket_is_available(t.status, t.hold_expire_time) AS is_available,
    CASE WHEN t.status = 'held' AND t.hold_expire_time <= now() THEN NULL
        ELSE t.holder_user_id END AS holder_user_id,
    CASE WHEN t.status = 'held' AND t.hold_expire_time <= now() THEN NULL
        ELSE t.hold_expire_time END AS hold_expire_time,
    t.booking_id,
    t.version,
    t.update_time
FROM tickets AS t;
