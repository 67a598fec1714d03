-- Seat-map drawings and standing sections (issue 12).
--
-- The drawing lives in the venues.seat_map document itself ("layout" next to the sections
-- and rows it describes); seat_map_capacity() ignores keys it does not know, so it needs no
-- change for that. A standing (general-admission) section is
--   {"name": ..., "price_tier": ..., "standing_capacity": N, "rows": []}
-- and counts N places; a section has rows or a standing capacity, never both.
--
-- Its tickets have no row: row_label '' and seat_label the place's number 1..N, which only
-- keeps the places apart under tickets_seat_key (the catalog shows no seat for them).

CREATE OR REPLACE FUNCTION seat_map_capacity(seat_map jsonb) RETURNS integer
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    section jsonb;
    seat_row jsonb;
    standing numeric;
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
            OR jsonb_typeof(section -> 'rows') IS DISTINCT FROM 'array' THEN
            RETURN NULL;
        END IF;
        IF section ? 'standing_capacity' THEN
            IF jsonb_typeof(section -> 'standing_capacity') IS DISTINCT FROM 'number'
                OR jsonb_array_length(section -> 'rows') <> 0 THEN
                RETURN NULL;
            END IF;
            standing := (section ->> 'standing_capacity')::numeric;
            IF standing <= 0 OR standing <> trunc(standing) OR standing > 200000 THEN
                RETURN NULL;
            END IF;
            total := total + standing::bigint;
            CONTINUE;
        END IF;
        IF jsonb_array_length(section -> 'rows') = 0 THEN
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

-- A standing place: no row, and a number for a seat label.
ALTER TABLE tickets DROP CONSTRAINT tickets_row_label_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_row_label_check
    CHECK (row_label <> '' OR seat_label ~ '^[0-9]{1,9}$');
