"""Watchers with an in-memory fake of the store: one line read per tick serves every watcher,
only changes are pushed, the pre-queue turns into places at the opening, and the stream ends
with the admission (a token for that buyer and event), a drop-out or a departure."""

import asyncio
import contextlib
import dataclasses
import datetime as dt

import pytest

from queue_svc import domain
from queue_svc.domain import Controls, EntryState, Policy, Snapshot, Standing
from queue_svc.ports import LineView, Vitals
from queue_svc.service import Admissions, QueueService
from queue_svc.watch import WatchHub
from ticketing_common import admission

KEY = "k" * 64
NOW = dt.datetime(2030, 5, 1, 18, 0, tzinfo=dt.UTC)
NOW_MS = domain.to_ms(NOW)


@dataclasses.dataclass
class FakeStore:
    """The line as the Redis store keeps it: slots, a head, gone slots and admissions."""

    slots: dict[str, int] = dataclasses.field(default_factory=dict)
    gone: set[int] = dataclasses.field(default_factory=set)
    left: set[str] = dataclasses.field(default_factory=set)
    admitted: set[str] = dataclasses.field(default_factory=set)
    head: int = 0
    sealed: bool = True
    epoch_ms: int = 30_000
    reads: int = 0
    touched: list = dataclasses.field(default_factory=list)

    def join(self, user: str) -> None:
        self.slots[user] = len(self.slots)

    def admit(self, count: int) -> None:
        by_slot = {s: u for u, s in self.slots.items()}
        while count and self.head < len(self.slots):
            if self.head not in self.gone:
                self.admitted.add(by_slot[self.head])
                count -= 1
            self.head += 1

    def waiting(self) -> int:
        return sum(1 for s in self.slots.values() if s >= self.head and s not in self.gone)

    def vitals(self) -> Vitals:
        return Vitals(NOW_MS, self.waiting(), len(self.admitted), Controls())

    def snapshot(self, user: str) -> Snapshot:
        base = {"now_ms": NOW_MS, "waiting": self.waiting(), "join_ms": NOW_MS - 1000}
        if user in self.left:
            return Snapshot(Standing.LEFT, **base)
        if user in self.admitted:
            return Snapshot(Standing.ADMITTED, admission_expire_ms=NOW_MS + 600_000, **base)
        if user not in self.slots:
            return Snapshot(Standing.NONE, **base)
        slot = self.slots[user]
        if slot < self.head or slot in self.gone:
            return Snapshot(Standing.DROPPED, slot=slot, **base)
        if not self.sealed:
            return Snapshot(Standing.PRE_QUEUE, slot=slot, **base)
        ahead = sum(1 for g in self.gone if self.head <= g < slot)
        return Snapshot(Standing.WAITING, slot=slot, position=1 + slot - self.head - ahead, **base)

    async def position(self, event_id, user, *, open_ms):
        return self.snapshot(user)

    async def standings(self, event_id, users, *, open_ms):
        return {u: self.snapshot(u) for u in users}

    async def touch(self, event_id, users):
        self.touched.append(list(users))
        return len(users)

    async def line(self, event_id, *, open_ms, upto_slot):
        self.reads += 1
        first = self.head // 8 * 8
        bits = bytearray(max(0, (upto_slot - first) // 8 + 1))
        for g in self.gone:
            if first <= g <= upto_slot:
                bits[(g - first) // 8] |= 0x80 >> ((g - first) % 8)
        return LineView(self.vitals(), self.sealed, self.head, len(self.slots), bytes(bits))


class FakePolicies:
    async def get(self, event_id):
        return Policy(event_id, True, 60, 500, 600, NOW, NOW + dt.timedelta(days=1))


@pytest.fixture
def store():
    return FakeStore()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def hub(store, clock):
    service = QueueService(store, FakePolicies(), Admissions(KEY))
    return WatchHub(service, interval_seconds=0.01, touch_every_seconds=0.05, clock=clock)


async def next_entry(stream):
    return await asyncio.wait_for(anext(stream), timeout=2)


async def test_watchers_follow_the_line_and_end_with_their_admission(store, hub):
    for user in ("a", "b", "c"):
        store.join(user)
    streams = {u: hub.watch("e1", u) for u in ("b", "c")}
    assert (await next_entry(streams["b"])).position == 2
    assert (await next_entry(streams["c"])).position == 3

    store.admit(1)
    assert (await next_entry(streams["b"])).position == 1
    assert (await next_entry(streams["c"])).position == 2

    store.admit(1)
    admitted = await next_entry(streams["b"])
    assert admitted.state is EntryState.ADMITTED
    assert admission.verify(KEY, admitted.admission_token, user_id="b", event_id="e1")
    with pytest.raises(StopAsyncIteration):
        await next_entry(streams["b"])
    assert (await next_entry(streams["c"])).position == 1
    await streams["c"].aclose()


async def test_one_line_read_per_tick_serves_every_watcher(store, hub):
    for i in range(100):
        store.join(f"u{i}")
    streams = [hub.watch("e1", f"u{i}") for i in range(100)]
    for stream in streams:
        await next_entry(stream)
    pending = [asyncio.ensure_future(next_entry(s)) for s in streams]
    await asyncio.sleep(0.05)  # all registered, and nothing to tell them
    assert not any(p.done() for p in pending)
    reads = store.reads
    store.gone.update({0, 5, 17})  # three leave: everyone behind them moves up
    moved = await asyncio.gather(*pending[18:])
    assert [e.position for e in moved] == list(range(16, 98))
    assert store.reads - reads <= 3
    for task in pending[:18]:
        task.cancel()
    for stream in streams:
        await stream.aclose()
    assert hub.watchers == 0


async def test_a_watcher_far_back_hears_of_small_moves_only_after_a_silence(store, hub, clock):
    for i in range(1000):
        store.join(f"u{i}")
    stream = hub.watch("e1", "u999")
    assert (await next_entry(stream)).position == 1000
    pending = asyncio.ensure_future(next_entry(stream))
    store.admit(10)  # 1%: not worth a message yet
    await asyncio.sleep(0.1)
    assert not pending.done()
    clock.now += domain.MAX_SILENCE_SECONDS
    assert (await pending).position == 990
    store.admit(60)  # 6%: at once
    assert (await next_entry(stream)).position == 930
    await stream.aclose()


async def test_nothing_is_pushed_while_nothing_changes(store, hub, clock):
    store.join("a")
    stream = hub.watch("e1", "a")
    await next_entry(stream)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    clock.now += 1
    await asyncio.sleep(0.2)
    assert not pending.done()
    assert store.touched, "a watcher keeps its place"
    pending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pending
    await stream.aclose()


async def test_the_pre_queue_gets_its_places_at_the_opening(store, hub):
    store.sealed = False
    for user in ("x", "y"):
        store.join(user)
    stream = hub.watch("e1", "y")
    first = await next_entry(stream)
    assert (first.state, first.position) == (EntryState.PRE_QUEUE, 0)
    store.sealed = True
    opened = await next_entry(stream)
    assert (opened.state, opened.position) == (EntryState.WAITING, 2)
    await stream.aclose()


async def test_a_watcher_who_left_or_dropped_out_hears_it_and_the_stream_ends(store, hub):
    for user in ("a", "b"):
        store.join(user)
    leaving, dropping = hub.watch("e1", "a"), hub.watch("e1", "b")
    await next_entry(leaving)
    await next_entry(dropping)
    store.left.add("a")
    store.gone.update({0, 1})
    assert (await next_entry(leaving)).state is EntryState.LEFT
    assert (await next_entry(dropping)).state is EntryState.EXPIRED
    for stream in (leaving, dropping):
        with pytest.raises(StopAsyncIteration):
            await next_entry(stream)


async def test_watching_without_joining_is_not_found(hub):
    with pytest.raises(domain.NotFound) as err:
        await next_entry(hub.watch("e1", "nobody"))
    assert err.value.reason == "NOT_IN_QUEUE"
