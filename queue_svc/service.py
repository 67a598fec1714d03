"""Queue use cases: joining, polling, leaving, operator controls, and the admission token.

Every method reads the event's policy from the catalog (cached briefly), makes one atomic call to
the store, and turns the store's snapshot into the contract's entry with the domain's rules.
An admitted buyer's token is signed when it is handed out, with the admission's expiry: the
store keeps the expiry, never the token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable

from queue_svc import domain
from queue_svc.domain import Entry, EntryState, Policy, Snapshot, Stats
from queue_svc.ports import Policies, Store
from ticketing_common import admission

# A queue's keys outlive its event by this much, then Redis forgets them.
KEEP_AFTER_END = dt.timedelta(days=1)


def expire_at_ms(policy: Policy) -> int:
    return domain.to_ms(policy.end_time + KEEP_AFTER_END)


def secure_draw() -> int:
    return secrets.randbelow(domain.DRAW_SPAN)


class Admissions:
    """Signs admission tokens (ticketing_common.admission) with the key shared with booking."""

    def __init__(self, key: str) -> None:
        self._key = key

    def attach(self, entry: Entry) -> Entry:
        if entry.state is not EntryState.ADMITTED or entry.admission_expire_time is None:
            return entry
        token = admission.sign(
            self._key,
            user_id=entry.user_id,
            event_id=entry.event_id,
            expire_time=entry.admission_expire_time,
        )
        return dataclasses.replace(entry, admission_token=token)


class QueueService:
    def __init__(
        self,
        store: Store,
        policies: Policies,
        admissions: Admissions,
        *,
        draw: Callable[[], int] = secure_draw,
    ) -> None:
        self.store = store
        self.policies = policies
        self.admissions = admissions
        self._draw = draw

    async def policy(self, event_id: str) -> Policy:
        return (await self.policies.get(event_id)).require_enabled()

    def entry(self, policy: Policy, user_id: str, snap: Snapshot) -> Entry:
        return self.admissions.attach(domain.entry(policy, user_id, snap))

    async def join(self, event_id: str, user_id: str) -> Entry:
        policy = await self.policy(event_id)
        snap = await self.store.join(
            event_id,
            user_id,
            open_ms=policy.open_ms,
            expire_at_ms=expire_at_ms(policy),
            draw=self._draw(),
        )
        if snap.standing is not domain.Standing.ADMITTED:
            policy.require_on_sale(snap.now_ms)
        return self.entry(policy, user_id, snap)

    async def position(self, event_id: str, user_id: str) -> Entry:
        policy = await self.policy(event_id)
        snap = await self.store.position(event_id, user_id, open_ms=policy.open_ms)
        return self.entry(policy, user_id, snap)

    async def leave(self, event_id: str, user_id: str) -> Entry:
        policy = await self.policy(event_id)
        snap = await self.store.leave(event_id, user_id, open_ms=policy.open_ms)
        return self.entry(policy, user_id, snap)

    async def stats(self, event_id: str) -> Stats:
        policy = await self.policy(event_id)
        counts = await self.store.counts(event_id)
        return Stats(
            event_id=event_id,
            pacing=domain.pacing(policy, counts.vitals.controls),
            waiting=counts.vitals.waiting,
            active=counts.vitals.active,
            admitted_last_minute=counts.admitted_last_minute,
            admitted_total=counts.admitted_total,
            open_time=policy.open_time,
        )

    async def control(
        self,
        event_id: str,
        *,
        paused: bool | None,
        rate_per_minute: int | None,
        max_active: int | None,
    ) -> Stats:
        domain.validate_controls(rate_per_minute, max_active)
        policy = await self.policy(event_id)
        await self.store.control(
            event_id,
            paused=paused,
            rate_per_minute=rate_per_minute,
            max_active=max_active,
            expire_at_ms=expire_at_ms(policy),
        )
        return await self.stats(event_id)
