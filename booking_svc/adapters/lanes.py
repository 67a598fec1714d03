"""A booking process's lane among its service's processes (issue 12): a number taken once from
a counter in Redis, so the processes that sell one event get consecutive lanes. Best available
uses its parity to fill rows from one end or the other (``booking_svc/best_available.py``).
Only a way to collide less: without Redis a process takes a random lane."""

from __future__ import annotations

import redis.asyncio as redis

LANE_KEY = "booking:best-available:lane"


class RedisLanes:
    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client

    async def take(self) -> int:
        if self._client is None:
            raise LookupError("no Redis: no shared lane counter")
        return int(await self._client.incr(LANE_KEY))
