"""The catalog's event-page change marks in Redis (``ticketing_common.event_pages``): after a
hold, a release or a sale commits, the pages of its event are no longer served from cache."""

from __future__ import annotations

import redis.asyncio as redis

from ticketing_common import event_pages


class EventPageMarks:
    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client

    async def mark_changed(self, *event_ids: str) -> None:
        """Best effort: a Redis failure is logged (the page then lapses within seconds)."""
        if self._client is not None and event_ids:
            await event_pages.mark_changed(self._client, *event_ids)
