"""The catalog's event-page change marks in Redis (``ticketing_common.event_pages``): after a
hold, a release or a sale commits, the pages of its event are no longer served from cache.

During a surge hundreds of holds of one event commit within milliseconds, and each would send
its own MSET. The marks that callers are waiting for at one moment go out as one MSET of their
events (at most one in flight): a caller is answered once a mark sent after its commit has
been written, which is all a mark promises, and a hot event is marked once per round trip
instead of once per hold.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis

from ticketing_common import event_pages


class EventPageMarks:
    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._waiting: list[tuple[tuple[str, ...], asyncio.Future[None]]] = []
        self._sending: asyncio.Task[None] | None = None

    async def mark_changed(self, *event_ids: str) -> None:
        """Best effort: a Redis failure is logged (the page then lapses within seconds)."""
        if self._client is None or not event_ids:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((event_ids, future))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send())
        await future

    async def _send(self) -> None:
        assert self._client is not None
        try:
            await asyncio.sleep(0)  # the marks of this turn of the event loop join in
            while self._waiting:
                batch, self._waiting = self._waiting, []
                ids = sorted({e for ids, _ in batch for e in ids})
                try:
                    await event_pages.mark_changed(self._client, *ids)  # logs its failures
                finally:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._sending = None
