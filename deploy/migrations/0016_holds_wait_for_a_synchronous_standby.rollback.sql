-- Holds skip the WAL flush again, with or without a synchronous standby (as 0006 had it).

DO $$
DECLARE
    fn regprocedure;
    def text;
    old constant text := $s$    IF current_setting('synchronous_standby_names') = '' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;$s$;
    new constant text := $s$    PERFORM set_config('synchronous_commit', 'off', true);$s$;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.proname IN ('hold_tickets', 'hold_best_available')
                 AND p.pronamespace = 'public'::regnamespace
    LOOP
        def := pg_get_functiondef(fn);
        EXECUTE replace(def, old, new);
    END LOOP;
END;
$$;
