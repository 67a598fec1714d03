"""The seed design's ticket lock in Redis (TTL 10 minutes): a fast first filter, never the guard.

Before touching Postgres, a reservation takes ``SET NX PX`` locks on its seats. A seat already
locked by another buyer is refused at once, which keeps a surge on a few hot seats away from
the database. Postgres still decides every sale: if Redis is down, slow or wrong, reservations
go straight to Postgres and stay correct.

A lock is taken for ``PENDING_MS`` only, and extended to the hold's ten minutes once Postgres
has held the seats: a booking process that dies between the two (SIGKILL mid-reserve) leaves
locks that lapse within seconds, not seats that nobody can buy for ten minutes while Postgres
says they are free (tests/integration/test_replicas.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis.asyncio as redis
from redis.exceptions import RedisError

from booking_svc.adapters.redis_batch import RedisBatch

log = logging.getLogger("booking.holds")

# Takes every lock or none: a seat locked by someone else fails the whole order. The caller's
# own locks keep their expiry, as their holds in Postgres do.
_TAKE = """
for i, key in ipairs(KEYS) do
    local owner = redis.call('GET', key)
    if owner and owner ~= ARGV[1] then
        return i
    end
end
for _, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2], 'NX')
end
return 0
"""
# Extends the caller's own locks to the hold's duration (after Postgres held the seats).
_EXTEND = """
local n = 0
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        n = n + redis.call('PEXPIRE', key, ARGV[2])
    end
end
return n
"""
# Deletes only the caller's own locks.
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[1] then
        n = n + redis.call('DEL', key)
    end
end
return n
"""


# Longer than a reservation takes (its statements time out after 10 s); if one ever outlives
# its lock, Postgres still decides: the lock is only a filter.
PENDING_MS = 10_000


def lock_key(ticket_id: str) -> str:
    return f"booking:hold:{ticket_id}"


class HoldLocks:
    """The scripts go through ``RedisBatch``: the locks of concurrent reservations are taken
    and extended in shared round trips (EVAL: Redis keeps the compiled script by its digest)."""

    def __init__(self, client: redis.Redis | None, ttl_ms: int) -> None:
        self._batch = RedisBatch(client) if client is not None else None
        self._ttl_ms = ttl_ms

    async def _eval(self, script: str, keys: list[str], *args: object) -> int:
        assert self._batch is not None
        return int(await self._batch.call("EVAL", script, len(keys), *keys, *args))

    async def take(
        self, user_id: str, ticket_ids: Sequence[str], *, held: bool = False
    ) -> str | None:
        """None if the user now holds every lock (or Redis could not tell); else the id of a
        seat someone else holds. Taken for PENDING_MS, or for the hold's duration when the
        seats are ``held`` in Postgres already."""
        if self._batch is None:
            return None
        ttl = self._ttl_ms if held else min(PENDING_MS, self._ttl_ms)
        try:
            blocked = await self._eval(_TAKE, [lock_key(t) for t in ticket_ids], user_id, ttl)
        except RedisError as exc:
            log.warning("hold locks unavailable, Postgres alone decides: %s", exc)
            return None
        return ticket_ids[blocked - 1] if blocked else None

    async def extend(self, user_id: str, ticket_ids: Sequence[str]) -> None:
        """The seats are held in Postgres: the user's locks last as long as the hold."""
        if self._batch is None or not ticket_ids:
            return
        try:
            await self._eval(_EXTEND, [lock_key(t) for t in ticket_ids], user_id, self._ttl_ms)
        except RedisError as exc:
            log.warning("could not extend %d hold lock(s): %s", len(ticket_ids), exc)

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> None:
        if self._batch is None or not ticket_ids:
            return
        try:
            await self._eval(_RELEASE, [lock_key(t) for t in ticket_ids], user_id)
        except RedisError as exc:
            log.warning("could not release %d hold lock(s): %s", len(ticket_ids), exc)
