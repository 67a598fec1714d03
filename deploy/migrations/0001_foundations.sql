-- Foundations: extensions and the helper functions the tables of later migrations use.
--
-- Conventions for every table in this schema:
--   * ids are uuid. Catalog rows default to gen_random_uuid() (core since PG13); the demo seed
--     passes uuid5 ids so its rows keep the same ids across runs.
--   * times are timestamptz named *_time; money is bigint minor units plus a char(3) ISO 4217
--     currency, as in the protos.
--   * optional text is NOT NULL DEFAULT '' rather than NULL where "empty" and "unknown" mean
--     the same to a reader: proto3 strings cannot tell them apart either.
--   * enumerations are text with a CHECK, not Postgres enum types: adding a value is a plain
--     constraint swap inside a transaction, and CDC consumers see ordinary text.

-- pg_trgm: trigram GIN indexes, so the catalog can filter names with ILIKE '%term%' without
-- the search engine. btree_gist: lets one GiST exclusion constraint combine equality on a
-- uuid (venue_id) with overlap of a time range (events_venue_no_overlap).
-- Both are "trusted" extensions: the database owner may create them, no superuser needed.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE EXTENSION IF NOT EXISTS btree_gist;

-- BEFORE UPDATE trigger: update_time follows every update. now() is the transaction's start
-- time, so all rows one transaction touches carry the same instant.
CREATE FUNCTION set_update_time() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.update_time := now();
    RETURN NEW;
END
$$;

-- BEFORE UPDATE trigger for rows with an optimistic-concurrency version. The version is always
-- OLD.version + 1, whatever the UPDATE assigned: a writer that also says
-- "version = version + 1" does not bump twice, and no writer can move a version backwards.
-- Writers compare versions in the WHERE clause ("... AND version = $seen") and must not
-- rely on setting the column themselves.
CREATE FUNCTION set_update_time_and_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.update_time := now();
    NEW.version := OLD.version + 1;
    RETURN NEW;
END
$$;

-- True for an IANA zone name the server knows ("Europe/London", "America/Argentina/Salta",
-- "UTC"). The pattern turns away what AT TIME ZONE would also accept but a venue must not
-- have: abbreviations ("EST", "CET") and POSIX offsets ("UTC+3", "<+05>-5"), whose meaning
-- differs from what most people expect. STABLE, not IMMUTABLE: the tz database can change.
CREATE FUNCTION is_iana_timezone(tz text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF tz IS NULL OR tz !~ '^(UTC|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+)+)$' THEN
        RETURN false;
    END IF;
    PERFORM now() AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- Number of seats described by a venue seat map, or NULL when the document is malformed.
-- The shape (arrays, because jsonb does not keep object key order and seat maps are ordered):
--
--   {"sections": [
--       {"name": "Floor A", "price_tier": "premium",
--        "rows": [{"label": "1", "seats": 24}, {"label": "2", "seats": 26}]},
--       ...]}
--
-- Section names are unique in a map, row labels unique in a section, seat counts positive
-- integers. Seats in a row are numbered 1..seats; tickets.seat_label is that number as text.
-- Returning NULL instead of raising lets the CHECK on venues fail with its own constraint
-- name (SQLSTATE 23514), which the catalog maps to INVALID_ARGUMENT like any other check.
CREATE FUNCTION seat_map_capacity(seat_map jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    section jsonb;
    seat_row jsonb;
    total bigint := 0;
BEGIN
    IF jsonb_typeof(seat_map -> 'sections') IS DISTINCT FROM 'array'
        OR jsonb_array_length(seat_map -> 'sections') = 0 THEN
        RETURN NULL;
    END IF;
    IF (SELECT count(DISTINCT s ->> 'name') <> count(*)
        FROM jsonb_array_elements(seat_map -> 'sections') AS s) THEN
        RETURN NULL;
    END IF;
    FOR section IN SELECT value FROM jsonb_array_elements(seat_map -> 'sections') LOOP
        IF jsonb_typeof(section -> 'name') IS DISTINCT FROM 'string'
            OR section ->> 'name' = ''
            OR jsonb_typeof(section -> 'price_tier') IS DISTINCT FROM 'string'
            OR section ->> 'price_tier' = ''
            OR jsonb_typeof(section -> 'rows') IS DISTINCT FROM 'array'
            OR jsonb_array_length(section -> 'rows') = 0 THEN
            RETURN NULL;
        END IF;
        IF (SELECT count(DISTINCT r ->> 'label') <> count(*)
            FROM jsonb_array_elements(section -> 'rows') AS r) THEN
            RETURN NULL;
        END IF;
        FOR seat_row IN SELECT value FROM jsonb_array_elements(section -> 'rows') LOOP
            IF jsonb_typeof(seat_row -> 'label') IS DISTINCT FROM 'string'
                OR seat_row ->> 'label' = ''
                OR jsonb_typeof(seat_row -> 'seats') IS DISTINCT FROM 'number'
                OR (seat_row ->> 'seats')::numeric <= 0
                OR (seat_row ->> 'seats')::numeric <> trunc((seat_row ->> 'seats')::numeric)
                OR (seat_row ->> 'seats')::numeric > 100000 THEN
                RETURN NULL;
            END IF;
            total := total + (seat_row ->> 'seats')::bigint;
        END LOOP;
    END LOOP;
    IF total > 2147483647 THEN
        RETURN NULL;
    END IF;
    RETURN total::integer;
END
$$;
