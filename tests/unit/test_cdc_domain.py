"""CDC rules: which documents a committed change touches, how transactions coalesce, when a
batch's transactions are visible, hold timers, lag percentiles."""

import datetime as dt

import pytest
from test_cdc_pgoutput import (
    EVENTS_REL,
    PERFORMERS_REL,
    TICKETS_REL,
    VENUES_REL,
    begin,
    commit,
    delete,
    insert,
    relations,
    truncate,
    update,
)

from cdc_worker.domain import (
    Backoff,
    Coalescer,
    HoldTimers,
    LagWindow,
    ProtocolError,
    parse_snapshot,
    visible_in,
    widen_xid,
)
from cdc_worker.pgoutput import UNCHANGED, decode
from cdc_worker.replicator import _is_milestone

E1, E2 = "00000000-0000-0000-0000-0000000000e1", "00000000-0000-0000-0000-0000000000e2"
V1, P1 = "00000000-0000-0000-0000-0000000000a1", "00000000-0000-0000-0000-0000000000b1"


def feed(*payloads) -> Coalescer:
    coalescer = Coalescer()
    for payload in [*relations(), *payloads]:
        coalescer.feed(decode(payload), now=1.0)
    return coalescer


def ticket(i: int, event: str, status: str = "held") -> list:
    return [f"t{i}", event, status, "5000"]


def test_a_thousand_ticket_changes_in_many_transactions_fold_into_two_event_reads():
    payloads = []
    lsn = 100
    for txn in range(10):
        payloads.append(begin(500 + txn, lsn))
        for i in range(100):
            payloads.append(update(TICKETS_REL, ticket(i, E1 if i % 2 else E2)))
        lsn += 1000
        payloads.append(commit(lsn))
    batch = feed(*payloads).take()
    assert batch.events == {E1, E2}
    assert batch.ticket_changes == 1000 and batch.transactions == 10
    assert batch.end_lsn == lsn and batch.xids == list(range(500, 510))
    assert not batch.refresh_all and not batch.rebuild


def test_only_committed_transactions_are_in_the_batch():
    coalescer = feed(
        begin(1, 10), insert(TICKETS_REL, ticket(1, E1)), commit(20),
        begin(2, 30), insert(TICKETS_REL, ticket(2, E2)),
    )  # fmt: skip
    assert coalescer.in_transaction and coalescer.transaction_changes == 1
    batch = coalescer.take()
    assert batch.events == {E1} and batch.end_lsn == 20
    assert coalescer.batch.is_empty()


def test_an_event_update_with_an_unchanged_toasted_description_still_names_its_event():
    batch = feed(
        begin(1, 10), update(EVENTS_REL, [E1, V1, P1, "Renamed", UNCHANGED]), commit(20)
    ).take()
    assert batch.events == {E1}


def test_venue_and_performer_changes_name_their_rows_not_events():
    batch = feed(
        begin(1, 10),
        update(VENUES_REL, [V1, "Hall", "Lisbon", UNCHANGED]),
        update(PERFORMERS_REL, [P1, "Band", UNCHANGED]),
        commit(20),
    ).take()
    assert (batch.events, batch.venues, batch.performers) == (set(), {V1}, {P1})


def test_a_deleted_event_and_a_changed_key_both_name_the_old_id():
    batch = feed(
        begin(1, 10),
        delete(EVENTS_REL, [E1, None, None, None, None]),
        update(EVENTS_REL, [E2, V1, P1, "x", "y"], old=["old-id", None, None, None, None]),
        commit(20),
    ).take()
    assert batch.events == {E1, E2, "old-id"}


def test_a_deleted_ticket_has_no_event_so_every_document_is_read_again():
    batch = feed(begin(1, 10), delete(TICKETS_REL, ["t1", None, None, None]), commit(20)).take()
    assert batch.refresh_all and not batch.events


@pytest.mark.parametrize(
    ("relids", "rebuild", "refresh_all"),
    [([EVENTS_REL, TICKETS_REL], True, False), ([TICKETS_REL], False, True)],
)
def test_truncate_rebuilds_or_refreshes(relids, rebuild, refresh_all):
    batch = feed(begin(1, 10), truncate(relids, cascade=True), commit(20)).take()
    assert (batch.rebuild, batch.refresh_all) == (rebuild, refresh_all)


def test_changes_out_of_protocol_order_are_refused():
    with pytest.raises(ProtocolError):
        feed(insert(TICKETS_REL, ticket(1, E1)))
    with pytest.raises(ProtocolError):
        feed(commit(10))
    coalescer = Coalescer()
    coalescer.feed(decode(begin(1, 1)))
    with pytest.raises(ProtocolError):
        coalescer.feed(decode(insert(999, ["x"])))


def test_snapshots_and_32_bit_xids():
    assert parse_snapshot("10:20:12,15") == (10, 20, frozenset({12, 15}))
    assert widen_xid(5, (3 << 32) + 9) == (3 << 32) + 5
    assert widen_xid(0xFFFFFFF0, (3 << 32) + 9) == (2 << 32) + 0xFFFFFFF0  # before a wrap
    assert visible_in("10:20:12,15", [3, 11, 13])
    assert not visible_in("10:20:12,15", [12])  # still in progress in that snapshot
    assert not visible_in("10:20:", [20])  # committed after the snapshot was taken
    epoch = 1 << 32
    assert visible_in(f"{epoch + 2}:{epoch + 4}:", [0xFFFFFFFE])  # last epoch's xid


def test_hold_timers_fire_once_after_the_expiry():
    now = dt.datetime(2026, 12, 1, 20, tzinfo=dt.UTC)
    timers = HoldTimers(grace=dt.timedelta(0))
    timers.schedule(E1, now + dt.timedelta(seconds=5))
    timers.schedule(E2, now + dt.timedelta(seconds=1))
    timers.schedule(E2, now + dt.timedelta(seconds=9))  # moved: the older timer is void
    assert timers.next_due() == now + dt.timedelta(seconds=5)
    assert timers.pop_due(now + dt.timedelta(seconds=2)) == set()
    assert timers.pop_due(now + dt.timedelta(seconds=6)) == {E1}
    assert timers.pop_due(now + dt.timedelta(seconds=6)) == set()
    timers.schedule(E2, None)
    assert timers.next_due() is None and len(timers) == 0


def test_lag_percentiles_backoff_and_progress_milestones():
    lags = LagWindow()
    assert lags.percentile(99) is None
    for ms in range(1, 101):
        lags.add(ms / 1000)
    assert lags.percentile(50) == 0.05 and lags.percentile(99) == 0.099
    backoff = Backoff(first=0.1, cap=1.0)
    assert [backoff.next() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next() == 0.1
    assert [n for n in range(1, 100_001) if _is_milestone(n, 10_000)] == [
        10_000,
        20_000,
        40_000,
        80_000,
    ]
