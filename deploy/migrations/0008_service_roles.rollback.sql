-- Back to one role for everything: the grants of this database go; a role goes too unless
-- another database on the server still grants it something (it is global to the cluster).
GRANT EXECUTE ON FUNCTION hold_tickets(text, uuid[], interval, uuid) TO PUBLIC;
GRANT EXECUTE ON FUNCTION hold_best_available(text, uuid, integer, text, text, interval, uuid)
    TO PUBLIC;

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['ticketing_catalog', 'ticketing_booking', 'ticketing_cdc']
    LOOP
        EXECUTE format('DROP OWNED BY %I', role_name);
        BEGIN
            EXECUTE format('DROP ROLE %I', role_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE NOTICE 'role % is still used by another database; kept', role_name;
        END;
    END LOOP;
END
$$;
