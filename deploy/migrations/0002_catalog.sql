-- The catalog: venues, performers and events. Tickets follow in 0003.

CREATE TABLE venues (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (name <> ''),
    address text NOT NULL DEFAULT '',
    city text NOT NULL CHECK (city <> ''),
    -- State, province or prefecture; '' where the address has none.
    region text NOT NULL DEFAULT '',
    -- ISO 3166-1 alpha-2, upper case.
    country char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    latitude double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    -- Event times are stored in UTC; the venue's zone is what a client shows them in.
    timezone text NOT NULL CHECK (is_iana_timezone(timezone)),
    -- Sections -> rows -> seat count, with a price tier per section; see seat_map_capacity().
    seat_map jsonb NOT NULL,
    -- Redundant with seat_map but read on every listing; the CHECK keeps the two in step.
    capacity integer NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT venues_capacity_matches_seat_map
        CHECK (capacity > 0 AND capacity = coalesce(seat_map_capacity(seat_map), -1))
);

CREATE INDEX venues_country_city_idx ON venues (country, city);

CREATE TRIGGER venues_set_update_time BEFORE UPDATE ON venues
    FOR EACH ROW EXECUTE FUNCTION set_update_time();

CREATE TABLE performers (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Not unique: two acts may share a name; the id is the identity.
    name text NOT NULL CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    genre text NOT NULL DEFAULT '',
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX performers_name_trgm_idx ON performers USING gin (name gin_trgm_ops);

CREATE TRIGGER performers_set_update_time BEFORE UPDATE ON performers
    FOR EACH ROW EXECUTE FUNCTION set_update_time();

CREATE TABLE events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- No ON DELETE CASCADE: a venue or performer with events cannot disappear underneath them.
    venue_id uuid NOT NULL REFERENCES venues (id),
    performer_id uuid NOT NULL REFERENCES performers (id),
    name text NOT NULL CHECK (name <> ''),
    description text NOT NULL DEFAULT '',
    type text NOT NULL CHECK (
        type IN ('concert', 'sports', 'theater', 'comedy', 'festival', 'family', 'conference')
    ),
    start_time timestamptz NOT NULL,
    end_time timestamptz NOT NULL,
    -- Before it nobody can hold or book; the queue may already collect visitors.
    on_sale_time timestamptz NOT NULL,
    -- Virtual waiting queue. The settings are NOT NULL with working defaults so that turning
    -- the queue on is one flag and readers never handle NULL; they mean nothing while
    -- queue_enabled is false.
    queue_enabled boolean NOT NULL DEFAULT false,
    queue_admission_rate_per_minute integer NOT NULL DEFAULT 600
        CHECK (queue_admission_rate_per_minute > 0),
    queue_max_active integer NOT NULL DEFAULT 500 CHECK (queue_max_active > 0),
    queue_admission_ttl_seconds integer NOT NULL DEFAULT 600
        CHECK (queue_admission_ttl_seconds > 0),
    max_tickets_per_user integer NOT NULL DEFAULT 8 CHECK (max_tickets_per_user BETWEEN 1 AND 100),
    -- Every ticket of the event is priced in this currency.
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    create_time timestamptz NOT NULL DEFAULT now(),
    update_time timestamptz NOT NULL DEFAULT now(),
    -- Bumped by the trigger on every update: an etag for the catalog and a cheap
    -- "did it change" for caches.
    version bigint NOT NULL DEFAULT 0,
    CONSTRAINT events_time_order CHECK (start_time < end_time AND on_sale_time <= start_time),
    -- One hall, one event at a time: two overlapping events in the same venue would sell the
    -- same physical seats twice (tickets are per event, seats per venue). Half-open ranges, so
    -- an event may start the instant the previous one ends.
    CONSTRAINT events_venue_no_overlap
        EXCLUDE USING gist (venue_id WITH =, tstzrange(start_time, end_time) WITH &&)
);

-- "Upcoming events" listings and the search backfill, ordered by time.
CREATE INDEX events_start_time_idx ON events (start_time);

-- A venue's or a performer's calendar. (The exclusion constraint's GiST index also answers
-- venue_id = $1, but not in start_time order.)
CREATE INDEX events_venue_start_idx ON events (venue_id, start_time);

CREATE INDEX events_performer_start_idx ON events (performer_id, start_time);

-- Queue-enabled sales, for the queue service; tiny because few events use the queue.
CREATE INDEX events_queue_on_sale_idx ON events (on_sale_time) WHERE queue_enabled;

CREATE INDEX events_name_trgm_idx ON events USING gin (name gin_trgm_ops);

CREATE TRIGGER events_set_update_time_and_version BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION set_update_time_and_version();
