"""The admitter: one process at a time lets buyers in at each event's pace.

Every queue_svc process runs this loop, but only the holder of the Redis lease
(``queue:admitter``, renewed every tick, lost after ``lease_seconds`` of silence) admits, and
the admit script itself checks the lease before it writes: a process that lost the lease while
paused cannot admit anyone (a fencing check), so admissions never double up and the pace holds
whatever the number of processes. The pacing clock is Redis TIME.

Per event and tick: read the bucket and the active admissions, plan with the domain's token
bucket, admit up to the plan in one Lua call. Every half epoch the sweeper marks the buyers who
stopped watching and polling as dropped out, so positions and estimates shrink with them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid

from prometheus_client import Counter, Gauge

from queue_svc import domain
from queue_svc.domain import Policy
from queue_svc.ports import LEASE_KEY, AdmissionStore, LeaseLost, Policies
from queue_svc.service import expire_at_ms
from ticketing_common.cancellation import checkpoint
from ticketing_common.errors import DomainError, NotFound
from ticketing_common.metrics import BoundedLabel

log = logging.getLogger("queue.admitter")

# How long a stopping admitter tries to give its lease up before leaving it to lapse.
HAND_OVER_SECONDS = 1.0

# Per event, as the leading admitter sees it at each tick (the others report nothing new).
_EVENT_LABEL = BoundedLabel(cap=100)
WAITING = Gauge(
    "ticketing_queue_waiting", "Buyers waiting in line (pre-queue included).", ["event_id"]
)
ACTIVE = Gauge("ticketing_queue_active", "Admissions not yet expired.", ["event_id"])
RATE = Gauge(
    "ticketing_queue_admission_rate_per_minute",
    "The pace the admitter lets buyers in at (0 while paused).",
    ["event_id"],
)
CAP = Gauge("ticketing_queue_max_active", "Admissions allowed at once.", ["event_id"])
ADMITTED = Counter("ticketing_queue_admitted_total", "Buyers admitted.", ["event_id"])
DROPPED = Counter(
    "ticketing_queue_dropped_total",
    "Buyers dropped out (stopped watching and polling).",
    ["event_id"],
)


class Admitter:
    def __init__(
        self,
        store: AdmissionStore,
        policies: Policies,
        *,
        interval_seconds: float = 0.1,
        lease_seconds: float = 3.0,
        owner: str | None = None,
        lease_key: str = LEASE_KEY,
    ) -> None:
        self.store = store
        self.policies = policies
        self.interval = interval_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_key = lease_key
        self.leading = False
        self._sweep_every = store.epoch_ms / 2000
        self._swept: dict[str, float] = {}
        self._last_warning = 0.0
        self._reported: set[str] = set()  # the events whose line this process reported

    async def run(self) -> None:
        """The background job: tick until cancelled, then hand the lease over, so that during
        a sale another process goes on admitting at its next tick, not ``lease_seconds`` later.

        A cancellation that a Redis call swallowed (see ``ticketing_common.cancellation``) ends
        the loop at the next round instead of never."""
        try:
            while True:
                try:
                    await self.tick()
                except DomainError as exc:
                    self._warn("admitter tick failed: %s", exc.message)
                checkpoint()
                await asyncio.sleep(self.interval)
        finally:
            await self._hand_over()

    async def _hand_over(self) -> None:
        if not self.leading:
            return
        self.leading = False
        try:
            async with asyncio.timeout(HAND_OVER_SECONDS):
                released = await self.store.release_lease(self.owner, key=self.lease_key)
        except (DomainError, TimeoutError):
            log.warning("admitter could not release the lease; it lapses by itself")
            return
        if released:
            log.info("admitter released the lease", extra={"owner": self.owner})

    async def tick(self) -> int:
        """One round over the events; returns how many buyers were admitted."""
        leading = await self._hold_lease()
        if leading != self.leading:
            state = "took" if leading else "lost"
            log.info("admitter %s the lease", state, extra={"owner": self.owner})
            self.leading = leading
            if not leading:  # the new leader reports the line from now on
                for event in self._reported:
                    for gauge in (WAITING, ACTIVE, RATE, CAP):
                        gauge.labels(event).set(0)
        if not leading:
            return 0
        admitted = 0
        for event_id in await self.store.events():
            try:
                policy = await self.policies.get(event_id)
            except NotFound:
                await self.store.forget(event_id)
                continue
            if not policy.enabled:
                continue
            try:
                admitted += await self.admit(policy)
                await self._maybe_sweep(event_id)
            except LeaseLost:
                self.leading = False
                log.info("admitter lost the lease mid-tick", extra={"owner": self.owner})
                return admitted
        return admitted

    async def _hold_lease(self) -> bool:
        return await self.store.hold_lease(self.owner, self.lease_ms, key=self.lease_key)

    async def admit(self, policy: Policy) -> int:
        view = await self.store.pace(policy.event_id, open_ms=policy.open_ms)
        event = _EVENT_LABEL(policy.event_id)
        self._reported.add(event)
        WAITING.labels(event).set(view.vitals.waiting)
        ACTIVE.labels(event).set(view.vitals.active)
        if view.vitals.now_ms < policy.open_ms:
            return 0
        pace = domain.pacing(policy, view.vitals.controls)
        RATE.labels(event).set(0 if pace.paused else pace.rate_per_minute)
        CAP.labels(event).set(pace.max_active)
        plan = domain.plan_admissions(
            view.bucket,
            view.vitals.now_ms,
            pace,
            active=view.vitals.active,
            open_ms=policy.open_ms,
        )
        idle = plan.limit == 0 or view.vitals.waiting == 0
        if view.bucket is not None and not pace.paused and idle:
            return 0  # nothing to write: the refill is recomputed from the stored bucket
        result = await self.store.admit(
            policy.event_id,
            owner=self.owner,
            open_ms=policy.open_ms,
            limit=plan.limit,
            bucket=plan.bucket,
            ttl_ms=pace.admission_ttl_seconds * 1000,
            expire_at_ms=expire_at_ms(policy),
            lease_key=self.lease_key,
        )
        ADMITTED.labels(event).inc(result.admitted)
        DROPPED.labels(event).inc(result.dropped)
        if result.admitted or result.dropped:
            log.debug(
                "admitted",
                extra={
                    "event_id": policy.event_id,
                    "admitted": result.admitted,
                    "dropped": result.dropped,
                    "head": result.head,
                },
            )
        return result.admitted

    async def _maybe_sweep(self, event_id: str) -> None:
        now = time.monotonic()
        if now - self._swept.get(event_id, 0.0) < self._sweep_every:
            return
        self._swept[event_id] = now
        await self.sweep(event_id)

    async def sweep(self, event_id: str) -> int:
        """Mark the buyers not seen for the grace period as dropped out."""
        view = await self.store.sweep_view(event_id)
        if view.n <= view.head:
            return 0
        first_bit = view.head // 8 * 8
        stale = domain.stale_slots(view.gone, view.alive, first_bit, view.head, view.n)
        if not stale:
            return 0
        dropped = await self.store.drop(event_id, stale)
        DROPPED.labels(_EVENT_LABEL(event_id)).inc(dropped)
        if dropped:
            log.info("buyers dropped out", extra={"event_id": event_id, "dropped": dropped})
        return dropped

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10:
            self._last_warning = now
            log.warning(message, *args)
