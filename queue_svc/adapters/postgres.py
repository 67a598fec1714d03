"""The catalog's queue settings of an event, read from Postgres and kept for a few seconds.

The catalog owns the events table; the queue only reads it. A short cache keeps a surge of
joins from turning into a surge of queries, and concurrent misses for one event share one
query. A change in the catalog reaches the queue within ``ttl_seconds``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from queue_svc.domain import Policy
from ticketing_common.errors import DomainError, NotFound, Reason, Unavailable

_POLICY_SQL = """
    SELECT queue_enabled, queue_admission_rate_per_minute, queue_max_active,
           queue_admission_ttl_seconds, on_sale_time, end_time
    FROM events WHERE id = %s
"""


class EventPolicies:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        ttl_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl_seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, Policy | DomainError]] = {}
        self._loading: dict[str, asyncio.Future[Policy | DomainError]] = {}

    async def get(self, event_id: str) -> Policy:
        """The event's policy, or NOT_FOUND (EVENT_NOT_FOUND); a miss is cached as well."""
        hit = self._cached.get(event_id)
        if hit is not None and self._clock() - hit[0] < self._ttl:
            found = hit[1]
        else:
            pending = self._loading.get(event_id)
            if pending is None:
                pending = asyncio.ensure_future(self._load(event_id))
                self._loading[event_id] = pending
                pending.add_done_callback(lambda _: self._loading.pop(event_id, None))
            found = await asyncio.shield(pending)
        if isinstance(found, DomainError):
            raise found
        return found

    async def _load(self, event_id: str) -> Policy | DomainError:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(_POLICY_SQL, (event_id,))
                row = await cur.fetchone()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise Unavailable("the catalog database is not reachable right now") from exc
        found: Policy | DomainError
        if row is None:
            found = NotFound(
                f"no event with id {event_id}",
                reason=Reason.EVENT_NOT_FOUND,
                metadata={"event_id": event_id},
            )
        else:
            found = Policy(event_id, *row)
        self._cached[event_id] = (self._clock(), found)
        if len(self._cached) > 10_000:
            self._cached.clear()
        return found
