"""The queue's use cases against in-memory fakes of their ports (queue_svc/ports.py): the
catalog's policies cached for a sale (one call per TTL, misses shared, the last answer kept
through a short catalog outage, UNAVAILABLE otherwise), the rules applied before the store is
touched, and the admitter forgetting events the catalog no longer knows."""

import asyncio
import dataclasses
import datetime as dt

import pytest

from queue_svc import domain
from queue_svc.admitter import Admitter
from queue_svc.domain import Controls, Policy, Snapshot, Standing
from queue_svc.policy_cache import PolicyCache
from queue_svc.ports import Admitted, Counts, PaceView, SweepView, Vitals
from queue_svc.service import Admissions, QueueService
from ticketing_common import admission
from ticketing_common.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    Reason,
    Unavailable,
)

KEY = "k" * 64
NOW = dt.datetime(2030, 5, 1, 18, 0, tzinfo=dt.UTC)
NOW_MS = domain.to_ms(NOW)


def policy(event_id: str = "e1", **changes) -> Policy:
    base = Policy(
        event_id, True, 600, 500, 600, NOW - dt.timedelta(hours=1), NOW + dt.timedelta(days=1)
    )
    return dataclasses.replace(base, **changes)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeCatalog:
    """``ports.Policies`` as the catalog answers it, counting calls; ``down`` makes it fail."""

    def __init__(self, *policies: Policy) -> None:
        self.policies = {p.event_id: p for p in policies}
        self.calls = 0
        self.down = False
        self.gate: asyncio.Event | None = None

    async def get(self, event_id: str) -> Policy:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise Unavailable("the catalog did not answer")
        if event_id not in self.policies:
            raise NotFound(f"no event {event_id}", reason=Reason.EVENT_NOT_FOUND)
        return self.policies[event_id]


# --- The policy cache --------------------------------------------------------------------------


async def test_a_sale_costs_the_catalog_one_call_per_ttl():
    catalog, clock = FakeCatalog(policy()), Clock()
    cache = PolicyCache(catalog, ttl_seconds=2, clock=clock)
    for _ in range(100):
        assert (await cache.get("e1")).rate_per_minute == 600
    assert catalog.calls == 1
    catalog.policies["e1"] = policy(rate_per_minute=60)  # the operator changes the pace
    clock.now += 2.5
    assert (await cache.get("e1")).rate_per_minute == 60
    assert catalog.calls == 2


async def test_concurrent_misses_share_one_call():
    catalog = FakeCatalog(policy())
    catalog.gate = asyncio.Event()
    cache = PolicyCache(catalog, clock=Clock())
    waiting = [asyncio.create_task(cache.get("e1")) for _ in range(50)]
    await asyncio.sleep(0)
    catalog.gate.set()
    assert len({(await w).event_id for w in waiting}) == 1
    assert catalog.calls == 1


async def test_an_unknown_event_is_not_found_and_cached_too():
    catalog = FakeCatalog()
    cache = PolicyCache(catalog, clock=Clock())
    for _ in range(3):
        with pytest.raises(NotFound) as err:
            await cache.get("nope")
        assert err.value.reason is Reason.EVENT_NOT_FOUND
    assert catalog.calls == 1


async def test_a_short_catalog_outage_keeps_the_sale_going_then_unavailable():
    catalog, clock = FakeCatalog(policy()), Clock()
    cache = PolicyCache(catalog, ttl_seconds=2, stale_seconds=30, clock=clock)
    await cache.get("e1")
    catalog.down = True
    clock.now += 20  # past the TTL, within the stale window: the last answer
    assert (await cache.get("e1")).event_id == "e1"
    clock.now += 15  # 35 s after the answer: too old to trust
    with pytest.raises(Unavailable) as err:
        await cache.get("e1")
    assert err.value.reason is Reason.DEPENDENCY_UNAVAILABLE
    catalog.down = False
    assert (await cache.get("e1")).event_id == "e1"  # back as soon as the catalog is


async def test_an_event_never_seen_is_unavailable_at_once_while_the_catalog_is_down():
    catalog = FakeCatalog(policy())
    catalog.down = True
    with pytest.raises(Unavailable):
        await PolicyCache(catalog, clock=Clock()).get("e1")


# --- The use cases -------------------------------------------------------------------------------


class FakeStore:
    """Answers with a fixed standing and records what was asked."""

    epoch_ms = 30_000

    def __init__(self, standing: Standing = Standing.WAITING) -> None:
        self.standing = standing
        self.calls: list[str] = []

    def snap(self) -> Snapshot:
        return Snapshot(
            self.standing,
            NOW_MS,
            waiting=3,
            slot=2,
            position=3,
            admission_expire_ms=NOW_MS + 600_000,
            join_ms=NOW_MS - 1000,
        )

    async def join(self, event_id, user_id, *, open_ms, expire_at_ms, draw):
        self.calls.append("join")
        return self.snap()

    async def position(self, event_id, user_id, *, open_ms):
        self.calls.append("position")
        return self.snap()

    async def counts(self, event_id):
        self.calls.append("counts")
        return Counts(Vitals(NOW_MS, 3, 1, Controls(paused=True)), 7, 2)


def service(store, *policies) -> QueueService:
    return QueueService(store, PolicyCache(FakeCatalog(*policies)), Admissions(KEY), draw=lambda: 0)


async def test_an_event_without_a_queue_is_refused_before_the_store_is_touched():
    store = FakeStore()
    with pytest.raises(FailedPrecondition) as err:
        await service(store, policy(enabled=False)).join("e1", "alice")
    assert err.value.reason is Reason.QUEUE_NOT_ENABLED
    assert store.calls == []


async def test_joining_after_the_event_ended_is_sale_closed_but_an_admission_stands():
    ended = policy(end_time=NOW - dt.timedelta(minutes=1))
    with pytest.raises(FailedPrecondition) as err:
        await service(FakeStore(), ended).join("e1", "alice")
    assert err.value.reason is Reason.SALE_CLOSED
    entry = await service(FakeStore(Standing.ADMITTED), ended).join("e1", "alice")
    assert entry.state is domain.EntryState.ADMITTED


async def test_an_admitted_buyer_gets_a_token_for_that_event_only():
    entry = await service(FakeStore(Standing.ADMITTED), policy()).position("e1", "alice")
    expiry = admission.verify(KEY, entry.admission_token, user_id="alice", event_id="e1")
    assert expiry == NOW + dt.timedelta(minutes=10)
    with pytest.raises(PermissionDenied):
        admission.verify(KEY, entry.admission_token, user_id="alice", event_id="e2")
    waiting = await service(FakeStore(), policy()).position("e1", "alice")
    assert (waiting.admission_token, waiting.position) == ("", 3)


async def test_stats_put_the_operators_overrides_over_the_catalogs_settings():
    stats = await service(FakeStore(), policy()).stats("e1")
    assert stats.pacing.paused and stats.pacing.rate_per_minute == 600
    assert (stats.waiting, stats.active, stats.admitted_total) == (3, 1, 7)


# --- The admitter ------------------------------------------------------------------------------


class LeaderStore(FakeStore):
    """The admitter's view: it holds the lease; the events with a line are ``events``."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.queued = list(events)
        self.forgotten: list[str] = []
        self.paced: list[str] = []

    async def hold_lease(self, owner, ttl_ms, *, key):
        return True

    async def release_lease(self, owner, *, key):
        return True

    async def events(self):
        return list(self.queued)

    async def forget(self, event_id):
        self.forgotten.append(event_id)

    async def pace(self, event_id, *, open_ms):
        self.paced.append(event_id)
        return PaceView(Vitals(NOW_MS, 0, 0, Controls()), None, True)

    async def admit(self, event_id, **_):
        return Admitted(0, 0, 0)

    async def sweep_view(self, event_id):
        return SweepView(NOW_MS, 0, 0, b"", ())


async def test_the_admitter_forgets_deleted_events_and_skips_ones_without_a_queue():
    store = LeaderStore(["gone", "off", "on"])
    policies = PolicyCache(FakeCatalog(policy("on"), policy("off", enabled=False)))
    await Admitter(store, policies, owner="t").tick()
    assert store.forgotten == ["gone"]
    assert store.paced == ["on"]


async def test_the_admitter_waits_out_a_catalog_outage_without_forgetting_anyone():
    store = LeaderStore(["on"])
    catalog = FakeCatalog(policy("on"))
    catalog.down = True
    with pytest.raises(Unavailable):
        await Admitter(store, PolicyCache(catalog), owner="t").tick()
    assert store.forgotten == []
