"""An event's queue settings, asked of the catalog and kept for a few seconds.

The catalog owns an event's policy; the queue asks for it on every join, poll and admitter tick,
so a short cache keeps a surge of joins from turning into a surge of catalog calls, and
concurrent misses for one event share one call. A change in the catalog reaches the queue
within ``ttl_seconds``. An unknown event is cached as well (a client polling for a made-up id
costs one call per TTL).

When the catalog cannot answer (down, slow past the deadline), the last answer is kept for up to
``stale_seconds`` more: a sale in progress goes on through a catalog restart. An event never
seen, or seen too long ago, gets UNAVAILABLE (DEPENDENCY_UNAVAILABLE) at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from queue_svc.domain import Policy
from queue_svc.ports import Policies
from ticketing_common.errors import DomainError, Unavailable

log = logging.getLogger("queue.policies")

# Entries kept at most; past it the cache starts over (events with a queue are few).
MAX_ENTRIES = 10_000


class PolicyCache:
    """``Policies`` in front of another ``Policies`` (the catalog's adapter)."""

    def __init__(
        self,
        source: Policies,
        *,
        ttl_seconds: float = 2.0,
        stale_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl = ttl_seconds
        self._stale = stale_seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, Policy | DomainError]] = {}
        self._loading: dict[str, asyncio.Future[Policy | DomainError]] = {}

    async def get(self, event_id: str) -> Policy:
        """The event's policy, or the source's NOT_FOUND; UNAVAILABLE as the module says."""
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
        found: Policy | DomainError
        try:
            found = await self._source.get(event_id)
        except Unavailable:
            stale = self._cached.get(event_id)
            if stale is not None and self._clock() - stale[0] < self._ttl + self._stale:
                log.warning("catalog unavailable: using the last policy of %s", event_id)
                return stale[1]
            raise
        except DomainError as exc:  # NOT_FOUND: an answer, kept like one
            found = exc
        if len(self._cached) >= MAX_ENTRIES:
            self._cached.clear()
        self._cached[event_id] = (self._clock(), found)
        return found
