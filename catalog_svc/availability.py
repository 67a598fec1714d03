"""WatchAvailability's moving parts: an event's seat states, and the fan-out of their changes
from one upstream feed per catalog process to every watcher of the event.

- ``SeatStates`` (pure): an event's tickets in seat order with their effective status, the
  snapshot as runs of one status per section, and what changed when tickets are read again.
- ``AvailabilityHub``: one ``EventChannel`` per watched event. The feed (Postgres
  LISTEN/NOTIFY, ``adapters/availability_feed.py``) says which tickets of which event
  changed; the channel reads those tickets again, at most every ``coalesce_seconds``, and
  publishes one update that every watcher of the event shares (encoded once). A held
  ticket's hold lapses without any write, so the channel also keeps the holds' expiry times
  and reads a ticket again when its hold is due. Watchers cost a generator and a position
  in the channel's short list of recent updates; one that falls behind that list gets a
  fresh snapshot instead of the updates it missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import heapq
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol

from catalog_svc.domain import SeatMap

log = logging.getLogger("ticketing.catalog.availability")


# --- seat states (pure) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class TicketState:
    """A ticket as a watcher sees it: effective status (a lapsed hold is available) and,
    while held, when the hold lapses."""

    id: str
    section: str
    row: str
    seat: str
    status: str
    hold_expire_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SectionRuns:
    section: str
    runs: tuple[tuple[str, int], ...]  # (status, count) in seat order


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """One message to watchers: a snapshot (the first) or changes."""

    snapshot: tuple[SectionRuns, ...] | None
    changes: tuple[TicketState, ...]
    read_time: dt.datetime


def seat_order(seat_map: SeatMap, tickets: Iterable[TicketState]) -> list[TicketState]:
    """Tickets in the seat map's order: sections and rows as the map lists them, seats (and
    standing places) by number; tickets of sections or rows the map lacks go last."""
    sections = {s.name: i for i, s in enumerate(seat_map.sections)}
    rows = {(s.name, r.label): i for s in seat_map.sections for i, r in enumerate(s.rows)}

    def key(t: TicketState) -> tuple[int, int, int, str]:
        number = int(t.seat) if t.seat.isdigit() else 1 << 30
        row = -1 if t.row == "" else rows.get((t.section, t.row), 1 << 30)
        return (sections.get(t.section, 1 << 30), row, number, t.section + "/" + t.row + t.seat)

    return sorted(tickets, key=key)


class SeatStates:
    """An event's tickets and their current state, in seat order."""

    def __init__(self, ordered: Sequence[TicketState]) -> None:
        self._order: dict[str, list[str]] = {}
        self._tickets: dict[str, TicketState] = {}
        for t in ordered:
            self._order.setdefault(t.section, []).append(t.id)
            self._tickets[t.id] = t

    def __len__(self) -> int:
        return len(self._tickets)

    def get(self, ticket_id: str) -> TicketState | None:
        return self._tickets.get(ticket_id)

    def held(self) -> list[TicketState]:
        return [t for t in self._tickets.values() if t.status == "held"]

    def snapshot(self) -> tuple[SectionRuns, ...]:
        out = []
        for section, ids in self._order.items():
            runs: list[tuple[str, int]] = []
            for ticket_id in ids:
                status = self._tickets[ticket_id].status
                if runs and runs[-1][0] == status:
                    runs[-1] = (status, runs[-1][1] + 1)
                else:
                    runs.append((status, 1))
            out.append(SectionRuns(section, tuple(runs)))
        return tuple(out)

    def apply(self, fresh: Iterable[TicketState]) -> list[TicketState]:
        """Take the tickets as just read; returns those whose status changed. Tickets the
        event did not have when the states were built are left out."""
        changed = []
        for t in fresh:
            old = self._tickets.get(t.id)
            if old is None:
                continue
            self._tickets[t.id] = t
            if old.status != t.status:
                changed.append(t)
        return changed


def expand_runs(runs: Iterable[tuple[str, int]]) -> list[str]:
    """A section's statuses one per ticket, from its runs (what a client does)."""
    return [status for status, count in runs for _ in range(count)]


# --- the fan-out --------------------------------------------------------------------------


class AvailabilitySource(Protocol):
    """Where seat states are read from (Postgres)."""

    async def event_tickets(self, event_id: str) -> tuple[SeatMap, list[TicketState]]:
        """The event's seat map and every ticket's state; raises NotFound for no event."""
        ...

    async def ticket_states(self, event_id: str, ticket_ids: Sequence[str]) -> list[TicketState]:
        """The current state of these tickets of the event."""
        ...


class Resync:
    """From the feed: notifications may have been lost (the connection was re-established);
    every channel reads its whole event again."""


FeedItem = tuple[str, Sequence[str]] | Resync


class AvailabilityFeed(Protocol):
    """Which tickets of which event changed, as their transactions commit."""

    def changes(self) -> AsyncIterator[FeedItem]: ...


Encoder = Callable[[Update], bytes]


@dataclasses.dataclass(slots=True)
class _Published:
    seq: int
    data: bytes
    changes: tuple[TicketState, ...]
    read_time: dt.datetime


class EventChannel:
    """The watchers of one event and the one reader that keeps its states current."""

    RECENT = 16  # updates kept for watchers a little behind

    def __init__(
        self,
        event_id: str,
        source: AvailabilitySource,
        encode: Encoder,
        coalesce_seconds: Callable[[], float],
        on_watchers: Callable[[EventChannel, int], None],
    ) -> None:
        self.event_id = event_id
        self._source = source
        self._encode = encode
        self._coalesce = coalesce_seconds
        self._on_watchers = on_watchers
        self._states: SeatStates | None = None
        self._ready = asyncio.Event()
        self._failure: Exception | None = None
        self._pending: set[str] = set()
        self._resync = False
        self._dirty = asyncio.Event()
        self._expiries: list[tuple[dt.datetime, str]] = []
        self._seq = 0
        self._recent: collections.deque[_Published] = collections.deque(maxlen=self.RECENT)
        # Not one future shared by every waiting watcher: cancelling one watcher's task
        # (its client went away) would cancel that future for all of them.
        self._wakeup = asyncio.Event()
        self._snapshot: tuple[int, bytes] | None = None
        self._merged: dict[int, bytes] = {}  # from seq -> the updates since, merged
        self.watchers = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    # --- the feed side

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def changed(self, ticket_ids: Iterable[str]) -> None:
        self._pending.update(ticket_ids)
        self._dirty.set()

    def resync(self) -> None:
        self._resync = True
        self._dirty.set()

    async def _run(self) -> None:
        try:
            await self._load()
        except Exception as exc:  # NotFound or the database: every waiting watcher sees it
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        last = 0.0
        while True:
            timeout = None
            if self._expiries:
                due = self._expiries[0][0]
                timeout = max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), timeout)
            # Coalesce: at most one read and one message per interval.
            wait = last + self._coalesce() - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = time.monotonic()
            self._dirty.clear()
            try:
                await self._refresh()
            except Exception:
                log.exception("reading seat states of %s failed; retrying", self.event_id)
                self._dirty.set()
                await asyncio.sleep(1.0)

    async def _load(self) -> None:
        seat_map, tickets = await self._source.event_tickets(self.event_id)
        self._states = SeatStates(seat_order(seat_map, tickets))
        self._expiries = []
        for t in self._states.held():
            self._expect_expiry(t)

    def _expect_expiry(self, t: TicketState) -> None:
        if t.status == "held" and t.hold_expire_time is not None:
            # A little after the hold's end, so the database agrees it lapsed.
            heapq.heappush(
                self._expiries, (t.hold_expire_time + dt.timedelta(milliseconds=20), t.id)
            )

    async def _refresh(self) -> None:
        assert self._states is not None
        now = dt.datetime.now(dt.UTC)
        if self._resync:
            self._resync = False
            self._pending.clear()
            _, tickets = await self._source.event_tickets(self.event_id)
            changes = self._states.apply(tickets)
            self._expiries = []
            for t in self._states.held():
                self._expect_expiry(t)
            self._publish(changes, now)
            return
        ids = self._pending
        self._pending = set()
        while self._expiries and self._expiries[0][0] <= now:
            _, ticket_id = heapq.heappop(self._expiries)
            ids.add(ticket_id)
        if not ids:
            return
        fresh = await self._source.ticket_states(self.event_id, sorted(ids))
        changes = self._states.apply(fresh)
        for t in fresh:
            current = self._states.get(t.id)
            if current is not None and current.status == "held":
                self._expect_expiry(current)
        self._publish(changes, now)

    def _publish(self, changes: Sequence[TicketState], now: dt.datetime) -> None:
        if not changes:
            return
        self._seq += 1
        update = Update(None, tuple(changes), now)
        self._recent.append(_Published(self._seq, self._encode(update), update.changes, now))
        self._merged.clear()
        woken, self._wakeup = self._wakeup, asyncio.Event()
        woken.set()

    # --- the watcher side

    def _snapshot_bytes(self) -> tuple[int, bytes]:
        assert self._states is not None
        if self._snapshot is None or self._snapshot[0] != self._seq:
            update = Update(self._states.snapshot(), (), dt.datetime.now(dt.UTC))
            self._snapshot = (self._seq, self._encode(update))
        return self._snapshot

    def _catch_up(self, seq: int) -> tuple[int, bytes]:
        """What a watcher that has sent up to ``seq`` sends next, latest-wins: the newest
        update if it missed none, the updates it missed merged into one (each ticket's latest
        state) if they are still at hand, else a fresh snapshot. A slow watcher never queues
        a backlog: whatever it missed while it was sending goes out as one message."""
        latest = self._recent[-1]
        if latest.seq == seq + 1:
            return latest.seq, latest.data
        if self._recent[0].seq > seq + 1:
            return self._snapshot_bytes()
        data = self._merged.get(seq)
        if data is None:
            merged: dict[str, TicketState] = {}
            for item in self._recent:
                if item.seq > seq:
                    for t in item.changes:
                        merged.pop(t.id, None)
                        merged[t.id] = t
            data = self._encode(Update(None, tuple(merged.values()), latest.read_time))
            self._merged[seq] = data
        return latest.seq, data

    async def watch(self) -> AsyncIterator[bytes]:
        """The snapshot, then the updates, encoded (merged for a watcher that fell behind);
        ends only when the caller stops. This generator is what the gRPC server iterates
        (no layer in between: each one costs every message of every watcher)."""
        self.watchers += 1
        self._on_watchers(self, 1)
        try:
            await self._ready.wait()
            if self._failure is not None:
                raise self._failure
            seq, data = self._snapshot_bytes()
            yield data
            while True:
                if self._seq == seq:
                    await self._wakeup.wait()
                    continue
                seq, data = self._catch_up(seq)
                yield data
        finally:
            self.watchers -= 1
            self._on_watchers(self, -1)


class AvailabilityHub:
    """One channel per watched event, fed from one feed for the whole process."""

    def __init__(
        self,
        source: AvailabilitySource,
        feed: AvailabilityFeed,
        encode: Encoder,
        *,
        coalesce_seconds: float = 0.25,
        message_budget: float = 40_000.0,
        max_coalesce_seconds: float = 0.5,
        linger_seconds: float = 5.0,
        on_watchers: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._source = source
        self._feed = feed
        self._encode = encode
        self._coalesce = coalesce_seconds
        self._budget = message_budget
        self._max_coalesce = max(coalesce_seconds, max_coalesce_seconds)
        self._linger = linger_seconds
        self._on_watchers = on_watchers
        self._channels: dict[str, EventChannel] = {}
        self._closing: dict[str, asyncio.TimerHandle] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._watchers = 0

    @property
    def watchers(self) -> int:
        return self._watchers

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for handle in self._closing.values():
            handle.cancel()
        for channel in list(self._channels.values()):
            await channel.stop()
        self._channels.clear()

    async def _listen(self) -> None:
        async for item in self._feed.changes():
            if isinstance(item, Resync):
                for channel in self._channels.values():
                    channel.resync()
                continue
            event_id, ids = item
            found = self._channels.get(event_id)
            if found is not None:
                found.changed(ids)

    def watch(self, event_id: str) -> AsyncIterator[bytes]:
        """The event's snapshot, then its changes, encoded (NotFound for no such event)."""
        channel = self._channels.get(event_id)
        if channel is None:
            channel = EventChannel(
                event_id, self._source, self._encode, self.coalesce_seconds, self._counted
            )
            self._channels[event_id] = channel
            channel.start()
            self._empty(channel)  # dropped again if nobody ever reads from it
        return channel.watch()

    def coalesce_seconds(self) -> float:
        """The window of every channel: the configured one, grown with the number of
        watchers so that the process sends about ``message_budget`` messages a second at
        most (one per watcher per window), capped at ``max_coalesce_seconds``."""
        return min(self._max_coalesce, max(self._coalesce, self._watchers / self._budget))

    def _counted(self, channel: EventChannel, delta: int) -> None:
        """A watcher of ``channel`` started (+1) or ended (-1)."""
        self._watchers += delta
        self._on_watchers(self._watchers)
        if delta > 0:
            handle = self._closing.pop(channel.event_id, None)
            if handle is not None:
                handle.cancel()
        elif channel.watchers == 0:
            self._empty(channel)

    def _empty(self, channel: EventChannel) -> None:
        """The last watcher left: keep reading for a while (a reload is the costly part),
        then drop the channel. A channel that failed to load goes at once."""
        loop = asyncio.get_running_loop()
        delay = 0.0 if channel.failed else self._linger

        def drop() -> None:
            self._closing.pop(channel.event_id, None)
            if channel.watchers == 0 and self._channels.get(channel.event_id) is channel:
                del self._channels[channel.event_id]
                task = loop.create_task(channel.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

        old = self._closing.pop(channel.event_id, None)
        if old is not None:
            old.cancel()
        self._closing[channel.event_id] = loop.call_later(delay, drop)
