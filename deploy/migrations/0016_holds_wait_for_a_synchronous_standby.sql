-- A hold waits for the synchronous standby when there is one (issue 13). Migration 0006 let a
-- hold commit without waiting for its WAL flush (`synchronous_commit = off`: one lost in a crash
-- was never sold, and confirm re-checks the hold before taking money). With a synchronous
-- standby (`ticketing up --ha`, a CloudNativePG Cluster with synchronous replicas) that also meant
-- the hold was not on the standby when the buyer heard of it, so a failover could lose a hold
-- the buyer had been told of (seen in the failover race: NOT_HOLDER at confirm). Where the
-- primary names synchronous standbys, a hold now commits like any write and is on two machines
-- before the buyer hears of it; on a single node it still skips the flush.
--
-- The functions' bodies are those of 0006 (hold_tickets) and 0014 (hold_best_available) with
-- that one statement changed, rewritten from their own definitions so the rest stays as tested;
-- the batch functions of 0012/0015 call these two, so they follow.

DO $$
DECLARE
    fn regprocedure;
    def text;
    old constant text := $s$    PERFORM set_config('synchronous_commit', 'off', true);$s$;
    new constant text := $s$    IF current_setting('synchronous_standby_names') = '' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;$s$;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_proc p
               WHERE p.proname IN ('hold_tickets', 'hold_best_available')
                 AND p.pronamespace = 'public'::regnamespace
    LOOP
        def := pg_get_functiondef(fn);
        IF position(old IN def) = 0 THEN
            RAISE EXCEPTION '% no longer sets synchronous_commit as 0006 did', fn;
        END IF;
        EXECUTE replace(def, old, new);
    END LOOP;
END;
$$;
