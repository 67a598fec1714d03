-- Back to 0006's (with 0016's change) hold_tickets.

DO $$
DECLARE
    fn regprocedure := 'hold_tickets(text, uuid[], interval, uuid)'::regprocedure;
    def text := pg_get_functiondef(fn);
    new_already constant text := $s$    SELECT (SELECT count(*) FROM tickets m
             WHERE m.holder_user_id = p_user AND m.event_id = hold_tickets.event_id
               AND m.status = 'held' AND m.hold_expire_time > now()
               AND NOT (m.id = ANY(p_ids)))$s$;
    old_already constant text := $s$    SELECT (SELECT count(*) FILTER (WHERE m.event_id = hold_tickets.event_id
                                      AND m.hold_expire_time > now()
                                      AND NOT (m.id = ANY(p_ids)))
              FROM tickets m WHERE m.holder_user_id = p_user AND m.status = 'held')$s$;
    new_claim constant text := $s$         WHERE t.id = ANY(p_ids) AND t.event_id = hold_tickets.event_id
           AND (ticket_is_available(t.status, t.hold_expire_time)
                OR (t.status = 'held' AND t.holder_user_id = p_user
                    AND t.hold_expire_time > now()))$s$;
    old_claim constant text := $s$         WHERE t.id = ANY(p_ids)
           AND CASE WHEN ticket_is_available(t.status, t.hold_expire_time) THEN true
                    ELSE t.status = 'held' AND t.holder_user_id = p_user
                         AND t.hold_expire_time > now() END$s$;
BEGIN
    IF position(old_already IN def) = 0 OR position(old_claim IN def) = 0 THEN
        RAISE EXCEPTION '% does not read the holds and seats as 0019 did', fn;
    END IF;
    EXECUTE replace(replace(def, old_already, new_already), old_claim, new_claim);
END;
$$;
