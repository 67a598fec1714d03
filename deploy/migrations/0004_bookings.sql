-- Bookings, their tickets, payments and the AIP-155 request_id replay store.
--
-- Rows created at request rate (bookings, payments) default to uuidv7() (new in PG18): ids
-- that grow with time keep inserts at the right edge of the primary key's B-tree instead of
-- scattering them over it as random v4 ids do. They reveal their creation time, which for a
-- booking the owner sees anyway.

CREATE TABLE bookings (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    -- The caller's id as the gateway passes it (x-ticketing-user): opaque text.
    user_id text NOT NULL CHECK (user_id <> ''),
    event_id uuid NOT NULL REFERENCES events (id),
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'confirmed', 'cancelled', 'refunded')),
    total_minor bigint NOT NULL CHECK (total_minor >= 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- AIP-155: a retried ReserveTickets carries the same request_id and gets the same booking.
    -- A plain UNIQUE treats NULLs as distinct (stated below), which is exactly "unique per
    -- user where given"; unlike a partial unique index it can be named in
    -- ON CONFLICT ON CONSTRAINT bookings_user_request_key.
    request_id text CHECK (request_id <> ''),
    create_time timestamptz NOT NULL DEFAULT now(),
    confirm_time timestamptz,
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT bookings_user_request_key UNIQUE NULLS DISTINCT (user_id, request_id),
    -- A refund follows a confirmation, so both keep the time of that confirmation.
    CONSTRAINT bookings_confirm_time
        CHECK (status NOT IN ('confirmed', 'refunded') OR confirm_time IS NOT NULL)
);

-- "My bookings", newest first; also the per-user ticket limit of an event.
CREATE INDEX bookings_user_create_idx ON bookings (user_id, create_time DESC);

CREATE INDEX bookings_event_idx ON bookings (event_id);

CREATE TRIGGER bookings_set_update_time BEFORE UPDATE ON bookings
    FOR EACH ROW EXECUTE FUNCTION set_update_time();

-- Which tickets a booking covers. Kept after a cancellation or refund releases the tickets
-- (tickets.booking_id is cleared then), so a booking's history stays complete.
CREATE TABLE booking_tickets (
    booking_id uuid NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    ticket_id uuid NOT NULL REFERENCES tickets (id),
    PRIMARY KEY (booking_id, ticket_id)
);

CREATE INDEX booking_tickets_ticket_idx ON booking_tickets (ticket_id);

ALTER TABLE tickets
    ADD CONSTRAINT tickets_booking_id_fkey FOREIGN KEY (booking_id) REFERENCES bookings (id);

CREATE TABLE payments (
    id uuid PRIMARY KEY DEFAULT uuidv7(),
    booking_id uuid NOT NULL REFERENCES bookings (id),
    provider text NOT NULL DEFAULT 'stripe' CHECK (provider IN ('stripe')),
    -- The provider's id (Stripe PaymentIntent "pi_..."). NULL until the provider has answered:
    -- the row is written before the call so that a crash in between leaves a trace.
    provider_payment_id text UNIQUE,
    -- Sent as Stripe's Idempotency-Key: a retried confirmation can never charge twice.
    idempotency_key text NOT NULL UNIQUE CHECK (idempotency_key <> ''),
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL
        CHECK (status IN ('requires_action', 'succeeded', 'failed', 'refunded')),
    refund_id text,
    failure_reason text,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_refund_id CHECK (status <> 'refunded' OR refund_id IS NOT NULL)
);

CREATE INDEX payments_booking_idx ON payments (booking_id);

CREATE TRIGGER payments_set_update_time BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION set_update_time();

-- AIP-155 replays for mutations that take a request_id. The first call inserts the key when
-- it starts (response NULL: in flight) and stores its answer before it commits, in the
-- transaction of its effect. A concurrent retry blocks on the primary key until then; a
-- later retry replays response/status_code, or is rejected if request_hash differs: one
-- request_id must not name two different requests.
CREATE TABLE idempotency_keys (
    user_id text NOT NULL,
    -- Full gRPC method name, e.g. '/ticketing.booking.v1.BookingService/ReserveTickets'.
    method text NOT NULL,
    request_id text NOT NULL,
    -- Digest of the serialized request (e.g. SHA-256).
    request_hash bytea NOT NULL,
    -- Serialized response message of the first call; NULL while it is still running.
    response bytea,
    -- gRPC status code of the first call (0 = OK).
    status_code integer,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, method, request_id),
    CONSTRAINT idempotency_keys_response_has_status
        CHECK (response IS NULL OR status_code IS NOT NULL)
);

-- For purging old keys (retries come within minutes; keep a day or so).
CREATE INDEX idempotency_keys_create_idx ON idempotency_keys (create_time);
