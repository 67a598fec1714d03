-- Back to seated sections only (0001's seat_map_capacity, 0003's row check).

ALTER TABLE tickets DROP CONSTRAINT tickets_row_label_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_row_label_check CHECK (row_label <> '');

CREATE OR REPLACE FUNCTION seat_map_capacity(seat_map jsonb) RETURNS integer
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
