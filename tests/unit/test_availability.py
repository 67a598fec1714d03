"""WatchAvailability's fan-out with an in-memory source and feed: snapshots as runs in seat
order, coalescing, lapsed holds read again at their expiry, resync, watcher bookkeeping."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence

import pytest

from catalog_svc.availability import (
    AvailabilityHub,
    FeedItem,
    Resync,
    SeatStates,
    TicketState,
    Update,
    expand_runs,
    seat_order,
)
from catalog_svc.domain import Row, SeatMap, Section
from ticketing_common.errors import NotFound

SEAT_MAP = SeatMap(
    (
        Section("Stalls", "premium", (Row("A", 3), Row("B", 2))),
        Section("Floor", "standard", (), standing_capacity=2),
    )
)


def tickets() -> list[TicketState]:
    seats = [("Stalls", r, str(n)) for r, c in (("A", 3), ("B", 2)) for n in range(1, c + 1)]
    seats += [("Floor", "", "1"), ("Floor", "", "2")]
    return [TicketState(f"{s}/{r}/{n}", s, r, n, "available") for s, r, n in seats]


def encode(update: Update) -> bytes:
    return json.dumps(
        {
            "snapshot": None
            if update.snapshot is None
            else {s.section: expand_runs(s.runs) for s in update.snapshot},
            "changes": sorted((c.id, c.status) for c in update.changes),
        }
    ).encode()


class FakeSource:
    def __init__(self) -> None:
        self.rows = {t.id: t for t in tickets()}
        self.reads: list[list[str]] = []

    def set(self, ticket_id: str, status: str, expires: dt.datetime | None = None) -> None:
        old = self.rows[ticket_id]
        self.rows[ticket_id] = TicketState(old.id, old.section, old.row, old.seat, status, expires)

    async def event_tickets(self, event_id: str) -> tuple[SeatMap, list[TicketState]]:
        if event_id != "e1":
            raise NotFound("no event")
        return SEAT_MAP, list(reversed(list(self.rows.values())))

    async def ticket_states(self, event_id: str, ids: Sequence[str]) -> list[TicketState]:
        self.reads.append(list(ids))
        now = dt.datetime.now(dt.UTC)
        out = []
        for i in ids:
            t = self.rows[i]
            if t.status == "held" and t.hold_expire_time and t.hold_expire_time <= now:
                t = TicketState(t.id, t.section, t.row, t.seat, "available")
            out.append(t)
        return out


class FakeFeed:
    def __init__(self) -> None:
        self.items: asyncio.Queue[FeedItem] = asyncio.Queue()

    async def changes(self) -> AsyncIterator[FeedItem]:
        while True:
            yield await self.items.get()


def test_snapshot_runs_follow_the_seat_map_order() -> None:
    ordered = seat_order(SEAT_MAP, reversed(tickets()))
    assert [t.id for t in ordered][:5] == [
        "Stalls/A/1",
        "Stalls/A/2",
        "Stalls/A/3",
        "Stalls/B/1",
        "Stalls/B/2",
    ]
    states = SeatStates(ordered)
    changed = states.apply([TicketState("Stalls/A/2", "Stalls", "A", "2", "held")])
    assert [c.id for c in changed] == ["Stalls/A/2"]
    snapshot = {s.section: s.runs for s in states.snapshot()}
    assert snapshot["Stalls"] == (("available", 1), ("held", 1), ("available", 3))
    assert snapshot["Floor"] == (("available", 2),)
    # The same status again is no change; an unknown ticket is ignored.
    assert states.apply([TicketState("Stalls/A/2", "Stalls", "A", "2", "held")]) == []
    assert states.apply([TicketState("x", "Stalls", "Z", "9", "held")]) == []


async def _next(stream: AsyncIterator[bytes]) -> dict[str, object]:
    return json.loads(await asyncio.wait_for(stream.__anext__(), 5))


def _hub(source: FakeSource, feed: FakeFeed, counts: list[int]) -> AvailabilityHub:
    return AvailabilityHub(
        source, feed, encode, coalesce_seconds=0.2, linger_seconds=0.0, on_watchers=counts.append
    )


async def test_changes_reach_every_watcher_coalesced_and_watchers_are_counted() -> None:
    source, feed, counts = FakeSource(), FakeFeed(), []
    hub = _hub(source, feed, counts)
    await hub.start()
    streams = [hub.watch("e1") for _ in range(3)]
    firsts = [await _next(s) for s in streams]
    assert all(f["snapshot"] == firsts[0]["snapshot"] for f in firsts)
    assert hub.watchers == 3
    # A burst of changes inside one window arrives as one message (after the first).
    for ticket_id in ("Stalls/A/1", "Stalls/A/2", "Stalls/A/3", "Floor//1"):
        source.set(ticket_id, "held", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        await feed.items.put(("e1", [ticket_id]))
        await asyncio.sleep(0.01)
    seen: set[str] = set()
    messages = 0
    while len(seen) < 4:
        got = await _next(streams[0])
        messages += 1
        seen |= {c[0] for c in got["changes"]}  # type: ignore[union-attr]
    assert messages <= 2
    # Another event's notifications are not read for this one.
    await feed.items.put(("e2", ["Stalls/B/1"]))
    for s in streams:
        await s.aclose()
    assert hub.watchers == 0 and counts[-1] == 0
    await hub.close()


async def test_a_hold_that_lapses_is_read_again_at_its_expiry() -> None:
    source, feed, counts = FakeSource(), FakeFeed(), []
    source.set("Stalls/B/2", "held", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.3))
    hub = _hub(source, feed, counts)
    await hub.start()
    stream = hub.watch("e1")
    first = await _next(stream)
    assert first["snapshot"]["Stalls"][4] == "held"  # type: ignore[index]
    # Nobody writes; the hub reads the ticket again when its hold is due.
    got = await _next(stream)
    assert got["changes"] == [["Stalls/B/2", "available"]]
    await stream.aclose()
    await hub.close()


async def test_after_a_resync_missed_changes_are_sent() -> None:
    source, feed, counts = FakeSource(), FakeFeed(), []
    hub = _hub(source, feed, counts)
    await hub.start()
    stream = hub.watch("e1")
    await _next(stream)
    source.set("Stalls/A/3", "booked")  # its notification was lost
    await feed.items.put(Resync())
    got = await _next(stream)
    assert got["changes"] == [["Stalls/A/3", "booked"]]
    await stream.aclose()
    await hub.close()


async def test_an_unknown_event_fails_the_watch() -> None:
    hub = _hub(FakeSource(), FakeFeed(), [])
    await hub.start()
    with pytest.raises(NotFound):
        await _next(hub.watch("nope"))
    assert hub.watchers == 0
    await hub.close()


def _state(first: dict[str, object], later: list[dict[str, object]]) -> dict[str, str]:
    """What a client holds after a snapshot and the changes after it: every ticket's status."""
    snapshot = first["snapshot"]
    assert isinstance(snapshot, dict)
    ids = [t.id for t in seat_order(SEAT_MAP, tickets())]
    statuses = [s for section in ("Stalls", "Floor") for s in snapshot[section]]
    state = dict(zip(ids, statuses, strict=True))
    for update in later:
        for ticket_id, status in update["changes"]:  # type: ignore[union-attr]
            state[ticket_id] = status
    return state


async def test_a_slow_watcher_does_not_hold_back_others_and_gets_what_it_missed_merged() -> None:
    source, feed = FakeSource(), FakeFeed()
    hub = AvailabilityHub(source, feed, encode, coalesce_seconds=0.01, linger_seconds=0.0)
    await hub.start()
    fast, slow = hub.watch("e1"), hub.watch("e1")
    first_fast, first_slow = await _next(fast), await _next(slow)
    # Five updates, one change each (Stalls/A/1 twice: held, then booked). The fast watcher
    # gets each one as it happens while the slow one reads nothing at all.
    steps = [
        ("Stalls/A/1", "held"),
        ("Stalls/A/2", "held"),
        ("Stalls/A/1", "booked"),
        ("Floor//1", "held"),
        ("Stalls/B/2", "booked"),
    ]
    seen_fast = []
    for ticket_id, status in steps:
        source.set(ticket_id, status, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        await feed.items.put(("e1", [ticket_id]))
        got = await _next(fast)
        assert got["changes"] == [[ticket_id, status]]
        seen_fast.append(got)
    # The slow watcher catches up in one message, each ticket at its latest state: no
    # backlog of five, and no stale "held" for Stalls/A/1.
    merged = await _next(slow)
    assert merged["snapshot"] is None
    assert merged["changes"] == sorted(
        [
            ["Stalls/A/1", "booked"],
            ["Stalls/A/2", "held"],
            ["Floor//1", "held"],
            ["Stalls/B/2", "booked"],
        ]
    )
    truth = {t.id: t.status for t in source.rows.values()}
    assert _state(first_fast, seen_fast) == truth
    assert _state(first_slow, [merged]) == truth
    await fast.aclose()
    await slow.aclose()
    await hub.close()


async def test_a_watcher_far_behind_starts_again_from_a_snapshot() -> None:
    source, feed = FakeSource(), FakeFeed()
    hub = AvailabilityHub(source, feed, encode, coalesce_seconds=0.01, linger_seconds=0.0)
    await hub.start()
    fast, slow = hub.watch("e1"), hub.watch("e1")
    await _next(fast)
    await _next(slow)
    ids = [t.id for t in tickets()]
    # More updates than the channel keeps (EventChannel.RECENT), while the slow one sleeps.
    for i in range(20):
        ticket_id = ids[i % len(ids)]  # each visit flips the ticket: every update a change
        source.set(ticket_id, "held" if (i // len(ids)) % 2 == 0 else "available")
        await feed.items.put(("e1", [ticket_id]))
        await _next(fast)
    caught_up = await _next(slow)
    assert caught_up["snapshot"] is not None
    assert _state(caught_up, []) == {t.id: t.status for t in source.rows.values()}
    await fast.aclose()
    await slow.aclose()
    await hub.close()


async def test_the_window_grows_with_the_watchers_up_to_its_cap() -> None:
    source, feed = FakeSource(), FakeFeed()
    hub = AvailabilityHub(
        source, feed, encode, coalesce_seconds=0.1, message_budget=20.0, linger_seconds=0.0
    )
    await hub.start()
    streams = [hub.watch("e1") for _ in range(4)]
    for s in streams:
        await _next(s)
    assert hub.coalesce_seconds() == pytest.approx(0.2)  # 4 watchers / 20 messages a second
    more = [hub.watch("e1") for _ in range(16)]
    for s in more:
        await _next(s)
    assert hub.coalesce_seconds() == pytest.approx(0.5)  # 1.0 wanted, capped
    # With the wider window, a burst still reaches a watcher, in fewer messages.
    for ticket_id in ("Stalls/A/1", "Stalls/A/2", "Stalls/A/3"):
        source.set(ticket_id, "held", dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        await feed.items.put(("e1", [ticket_id]))
        await asyncio.sleep(0.15)
    got: set[str] = set()
    messages = 0
    while len(got) < 3:
        got |= {c[0] for c in (await _next(streams[0]))["changes"]}  # type: ignore[union-attr]
        messages += 1
    assert messages <= 2
    for s in streams + more:
        await s.aclose()
    assert hub.coalesce_seconds() == pytest.approx(0.1)
    await hub.close()


async def test_a_watcher_that_goes_away_does_not_disturb_the_others() -> None:
    source, feed = FakeSource(), FakeFeed()
    hub = AvailabilityHub(source, feed, encode, coalesce_seconds=0.01, linger_seconds=0.0)
    await hub.start()
    stay, leave = hub.watch("e1"), hub.watch("e1")
    await _next(stay)
    await _next(leave)
    # The leaving one is parked waiting for an update when its task is cancelled (what the
    # gRPC server does when a client hangs up).
    task = asyncio.create_task(_next(leave))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    source.set("Stalls/B/1", "booked")
    await feed.items.put(("e1", ["Stalls/B/1"]))
    assert (await _next(stay))["changes"] == [["Stalls/B/1", "booked"]]
    await leave.aclose()
    assert hub.watchers == 1
    await stay.aclose()
    await hub.close()
