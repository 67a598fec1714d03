"""The event page cache in Redis (the layout is shared with booking, which marks pages changed:
``ticketing_common.event_pages``)."""

from __future__ import annotations

import redis.asyncio as redis
from redis.exceptions import RedisError

from catalog_svc.ports import CacheUnavailable
from ticketing_common import event_pages


class RedisPageCache:
    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    async def read(self, event_id: str) -> tuple[bytes, bytes | None]:
        try:
            return await event_pages.read(self._client, event_id)
        except RedisError as exc:
            raise CacheUnavailable(str(exc)) from exc

    async def store(self, event_id: str, token: bytes, page: bytes, ttl_seconds: float) -> None:
        await event_pages.store(self._client, event_id, token, page, ttl_seconds)

    async def mark_changed(self, *event_ids: str) -> None:
        await event_pages.mark_changed(self._client, *event_ids)
