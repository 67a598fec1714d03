-- hold_tickets reads only the order's seats and the buyer's holds, whatever the statistics say
-- (issue 12). Two of its statements had plans that read every free seat or every live hold of
-- the event, seen in the best-available bench (auto_explain of a booking backend's generic
-- plan, an order of 2 seats, bench/RESULTS.md):
--
-- * the buyer's live holds of the event ("already"): an index scan of
--   tickets_hold_expiry_idx on (event_id, hold_expire_time > now()) filtering holder_user_id,
--   5,000 rows removed by the filter at the end of a 5,000-seat sale (0.5 ms), where
--   tickets_holder_idx answers in one probe: both were estimated at one row and the tie went
--   the wrong way. The count now names only the buyer (and status 'held') in its WHERE and
--   the event and expiry in its FILTER, so tickets_holder_idx is the only index it can use
--   (a buyer's live holds over all events: a few);
-- * the seats the order may claim: a BitmapOr of tickets_free_idx (event_id, status =
--   'available'), tickets_hold_expiry_idx and tickets_holder_idx, since "available, or lapsed,
--   or the buyer's own" matches those partial indexes' predicates: every free seat of the
--   event read (thousands early in a sale) to keep two. The condition is now one CASE, which
--   matches no index predicate, and the event is no longer repeated (the statement before it
--   found every id in this one event), so the primary key it is.
--
-- Same answers, same locks (FOR UPDATE SKIP LOCKED, in id order). As 0016 does, the body is
-- rewritten from the function's own definition (0006 with 0016's change); hold_tickets_batch
-- and hold_picked_seats_batch call it and follow.

DO $$
DECLARE
    fn regprocedure := 'hold_tickets(text, uuid[], interval, uuid)'::regprocedure;
    def text := pg_get_functiondef(fn);
    old_already constant text := $s$    SELECT (SELECT count(*) FROM tickets m
             WHERE m.holder_user_id = p_user AND m.event_id = hold_tickets.event_id
               AND m.status = 'held' AND m.hold_expire_time > now()
               AND NOT (m.id = ANY(p_ids)))$s$;
    new_already constant text := $s$    SELECT (SELECT count(*) FILTER (WHERE m.event_id = hold_tickets.event_id
                                      AND m.hold_expire_time > now()
                                      AND NOT (m.id = ANY(p_ids)))
              FROM tickets m WHERE m.holder_user_id = p_user AND m.status = 'held')$s$;
    old_claim constant text := $s$         WHERE t.id = ANY(p_ids) AND t.event_id = hold_tickets.event_id
           AND (ticket_is_available(t.status, t.hold_expire_time)
                OR (t.status = 'held' AND t.holder_user_id = p_user
                    AND t.hold_expire_time > now()))$s$;
    new_claim constant text := $s$         WHERE t.id = ANY(p_ids)
           AND CASE WHEN ticket_is_available(t.status, t.hold_expire_time) THEN true
                    ELSE t.status = 'held' AND t.holder_user_id = p_user
                         AND t.hold_expire_time > now() END$s$;
BEGIN
    IF position(old_already IN def) = 0 OR position(old_claim IN def) = 0 THEN
        RAISE EXCEPTION '% no longer reads the holds and seats as 0006 did', fn;
    END IF;
    EXECUTE replace(replace(def, old_already, new_already), old_claim, new_claim);
END;
$$;
