"""The ports of the queue's use cases: what ``service.py``, ``admitter.py`` and ``watch.py``
need from the outside, as ``Protocol``s.

``QueueStore`` (``adapters/redis_store.py``) is the line in Redis; ``Policies`` is an event's
queue settings, which the catalog owns: ``adapters/catalog.py`` asks it over gRPC and
``policy_cache.PolicyCache`` keeps the answers for a few seconds. The unit tests fake both in
memory (``tests/unit/test_queue_service.py``). The values the store hands back are here too, so
nothing above the adapters imports one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from queue_svc.domain import Bucket, Controls, Policy, Snapshot

# The name of the admitters' shared lease in the store (one admits at a time).
LEASE_KEY = "queue:admitter"


class LeaseLost(Exception):
    """The admitter's lease passed to another process; its write was refused."""


@dataclasses.dataclass(frozen=True, slots=True)
class Vitals:
    now_ms: int
    waiting: int
    active: int
    controls: Controls


@dataclasses.dataclass(frozen=True, slots=True)
class LineView:
    """What watchers of one event need from one read."""

    vitals: Vitals
    sealed: bool
    head: int
    n: int
    gone: bytes  # the gone-bitmap from byte head // 8


@dataclasses.dataclass(frozen=True, slots=True)
class PaceView:
    vitals: Vitals
    bucket: Bucket | None
    sealed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    admitted: int
    dropped: int
    head: int


@dataclasses.dataclass(frozen=True, slots=True)
class SweepView:
    now_ms: int
    head: int
    n: int
    gone: bytes
    alive: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    vitals: Vitals
    admitted_total: int
    admitted_last_minute: int


class Policies(Protocol):
    """An event's queue settings as the catalog holds them.

    Raises ``NotFound`` (EVENT_NOT_FOUND) for an event the catalog does not know and
    ``Unavailable`` (DEPENDENCY_UNAVAILABLE) when the catalog cannot say."""

    async def get(self, event_id: str) -> Policy: ...


class Store(Protocol):
    """The line of every event, each change atomic; times are the store's clock (ms).

    Raises ``Unavailable`` when the store cannot be reached."""

    @property
    def epoch_ms(self) -> int: ...

    async def join(
        self, event_id: str, user_id: str, *, open_ms: int, expire_at_ms: int, draw: int
    ) -> Snapshot: ...

    async def position(self, event_id: str, user_id: str, *, open_ms: int) -> Snapshot: ...

    async def leave(self, event_id: str, user_id: str, *, open_ms: int) -> Snapshot: ...

    async def standings(
        self, event_id: str, user_ids: Sequence[str], *, open_ms: int
    ) -> dict[str, Snapshot]: ...

    async def touch(self, event_id: str, user_ids: Sequence[str]) -> int: ...

    async def line(self, event_id: str, *, open_ms: int, upto_slot: int) -> LineView: ...

    async def counts(self, event_id: str) -> Counts: ...

    async def control(
        self,
        event_id: str,
        *,
        paused: bool | None,
        rate_per_minute: int | None,
        max_active: int | None,
        expire_at_ms: int,
    ) -> Vitals: ...


class AdmissionStore(Store, Protocol):
    """What the admitter needs on top: the lease, the events with a line, pacing and sweeps."""

    async def hold_lease(self, owner: str, ttl_ms: int, *, key: str) -> bool: ...

    async def release_lease(self, owner: str, *, key: str) -> bool: ...

    async def events(self) -> list[str]: ...

    async def forget(self, event_id: str) -> None: ...

    async def pace(self, event_id: str, *, open_ms: int) -> PaceView: ...

    async def admit(
        self,
        event_id: str,
        *,
        owner: str,
        open_ms: int,
        limit: int,
        bucket: Bucket,
        ttl_ms: int,
        expire_at_ms: int,
        lease_key: str,
    ) -> Admitted: ...

    async def sweep_view(self, event_id: str) -> SweepView: ...

    async def drop(self, event_id: str, slots: Sequence[int]) -> int: ...
