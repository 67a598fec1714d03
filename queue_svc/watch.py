"""Watchers: server-streamed places, computed for all of a process's watchers at once.

A process keeps its watchers per event. Every ``interval_seconds`` one Redis read returns the
line's head, its length and the gone-bitmap from the head to the last watcher's slot; every
watcher's position follows from that copy without another call. Only watchers whose slot the
admitter has passed (admitted, dropped, left) or whose slot is not known yet (the pre-queue
just sealed) are looked up, in one batch. Watching keeps the place: the watchers are touched
in batches twice per liveness epoch. 10,000 watchers cost one read per tick, not 10,000.
Which changes a watcher hears of is the domain's rule (``domain.worth_pushing``): every move
near the front, bigger moves further back, and something at least every few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable

from queue_svc import domain
from queue_svc.domain import Entry, EntryState, Policy, Snapshot, Standing
from queue_svc.service import QueueService
from ticketing_common.cancellation import checkpoint
from ticketing_common.errors import DomainError

log = logging.getLogger("queue.watch")


@dataclasses.dataclass(eq=False)
class Watcher:
    user_id: str
    # The slot while waiting after the opening; None while unknown (pre-queue).
    slot: int | None
    last: Entry
    pushed_at: float
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def silent_for(self, now: float) -> float:
        return now - self.pushed_at

    def unchanged(self, state: EntryState, position: int, paused: bool, now: float) -> bool:
        """Cheaply, before an entry is built: nothing the watcher would hear of."""
        last = self.last
        if last.state is not state or (last.estimated_wait is None) != paused:
            return False
        if state is EntryState.WAITING:
            silent_for = self.silent_for(now)
            return not domain.move_worth_telling(last.position, position, silent_for=silent_for)
        return self.silent_for(now) < domain.MAX_SILENCE_SECONDS

    def push(self, entry: Entry, now: float) -> bool:
        if not domain.worth_pushing(self.last, entry, silent_for=self.silent_for(now)):
            return False
        self.last = entry
        self.pushed_at = now
        self.ready.set()
        return True


class WatchHub:
    def __init__(
        self,
        service: QueueService,
        *,
        interval_seconds: float = 1.0,
        touch_every_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.clock = clock
        self.interval = interval_seconds
        # Twice per liveness epoch, so a watcher is never mistaken for gone.
        self.touch_every = touch_every_seconds or service.store.epoch_ms / 2000
        self._groups: dict[str, _EventWatchers] = {}
        self.pushed = 0

    @property
    def watchers(self) -> int:
        return sum(len(g.watchers) for g in self._groups.values())

    async def watch(self, event_id: str, user_id: str) -> AsyncIterator[Entry]:
        """The buyer's entry now, then every change worth telling, ending with a terminal
        state (admitted with its token, expired, left)."""
        policy = await self.service.policy(event_id)
        snap = await self.service.store.position(event_id, user_id, open_ms=policy.open_ms)
        first = self.service.entry(policy, user_id, snap)
        yield first
        if first.terminal:
            return
        slot = snap.slot if snap.standing is Standing.WAITING else None
        watcher = Watcher(user_id, slot, first, pushed_at=self.clock())
        group = self._groups.get(event_id)
        if group is None:
            group = self._groups[event_id] = _EventWatchers(self, event_id)
        group.watchers.add(watcher)  # no await since the lookup: the group cannot end between
        try:
            while True:
                await watcher.ready.wait()
                watcher.ready.clear()
                yield watcher.last
                if watcher.last.terminal:
                    return
        finally:
            group.watchers.discard(watcher)

    def _ended(self, group: _EventWatchers) -> None:
        if self._groups.get(group.event_id) is group:
            del self._groups[group.event_id]


class _EventWatchers:
    def __init__(self, hub: WatchHub, event_id: str) -> None:
        self.hub = hub
        self.event_id = event_id
        self.watchers: set[Watcher] = set()
        self._touched = hub.clock()
        self._task = asyncio.create_task(self._run(), name=f"watch {event_id}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        try:
            while self.watchers:
                # A fixed rate: a slow tick shortens the next pause instead of adding to it.
                next_tick = max(next_tick + self.hub.interval, loop.time())
                await asyncio.sleep(next_tick - loop.time())
                if not self.watchers:
                    break
                checkpoint()
                try:
                    await self.tick()
                except DomainError as exc:
                    log.warning("watch tick failed: %s", exc.message)
                except Exception:
                    log.exception("watch tick crashed")
        finally:
            self.hub._ended(self)

    async def tick(self) -> None:
        service = self.hub.service
        policy = await service.policy(self.event_id)
        watchers = list(self.watchers)
        slots = [w.slot for w in watchers if w.slot is not None]
        line = await service.store.line(
            self.event_id, open_ms=policy.open_ms, upto_slot=max(slots, default=-1)
        )
        vitals = line.vitals
        first_bit = line.head // 8 * 8
        ahead = domain.gone_before(
            line.gone, first_bit, line.head, [s for s in slots if s >= line.head]
        )
        lookup: list[Watcher] = []
        now = self.hub.clock()
        paused = vitals.controls.paused
        for w in watchers:
            if not line.sealed:
                state, standing, slot, pos = EntryState.PRE_QUEUE, Standing.PRE_QUEUE, -1, 0
            elif (
                w.slot is None or w.slot < line.head or domain.bit_set(line.gone, first_bit, w.slot)
            ):
                lookup.append(w)
                continue
            else:
                state, standing, slot = EntryState.WAITING, Standing.WAITING, w.slot
                pos = domain.position(w.slot, line.head, ahead[w.slot])
            if w.unchanged(state, pos, paused, now):
                continue
            snap = Snapshot(
                standing=standing,
                now_ms=vitals.now_ms,
                waiting=vitals.waiting,
                slot=slot,
                position=pos,
                join_ms=domain.to_ms(w.last.join_time) if w.last.join_time else 0,
                active=vitals.active,
                controls=vitals.controls,
            )
            self._push(w, policy, snap, now)
        if lookup:
            users = sorted({w.user_id for w in lookup})
            found = await service.store.standings(self.event_id, users, open_ms=policy.open_ms)
            for w in lookup:
                snap = found[w.user_id]
                if snap.standing is Standing.WAITING:
                    w.slot = snap.slot
                self._push(w, policy, snap, now)
        if now - self._touched >= self.hub.touch_every:
            self._touched = now
            await service.store.touch(self.event_id, sorted({w.user_id for w in watchers}))

    def _push(self, watcher: Watcher, policy: Policy, snap: Snapshot, now: float) -> None:
        if snap.standing is Standing.NONE:
            snap = dataclasses.replace(snap, standing=Standing.LEFT)
        if watcher.push(self.hub.service.entry(policy, watcher.user_id, snap), now):
            self.hub.pushed += 1
