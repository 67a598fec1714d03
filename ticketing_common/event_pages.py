"""The event-page cache shared by the catalog (reader) and every writer of event data.

A page is cached under the event's *change token*, a random value that every writer replaces
after it commits a change to the event or its tickets (``mark_changed``). A reader takes the
token first, then the page; a page stored under an older token is never served. So a booked,
released or edited ticket shows in the next read once the writer's commit and mark are done.

Hold expiry changes a page without any write, so a page also expires when its first live hold
lapses; and every page expires after ``MAX_PAGE_TTL_SECONDS`` in case a writer could not
reach Redis after its commit (the only way this cache can serve a stale page).

Change tokens have no TTL and pages do: run Redis with ``maxmemory-policy volatile-lru`` so
memory pressure evicts pages, never tokens.
"""

from __future__ import annotations

import logging
import uuid

import redis.asyncio as redis
from redis.exceptions import RedisError

log = logging.getLogger("ticketing.event_pages")

MAX_PAGE_TTL_SECONDS = 10.0
_SEPARATOR = b"\n"


def _token_key(event_id: str) -> str:
    return f"catalog:event:{event_id}:token"


def _page_key(event_id: str) -> str:
    return f"catalog:event:{event_id}:page"


async def mark_changed(client: redis.Redis, *event_ids: str) -> bool:
    """Invalidate the cached pages of these events; False (and a log line) if Redis failed."""
    if not event_ids:
        return True
    try:
        # One MSET, not a pipeline: the hot path marks one event per hold.
        await client.mset({_token_key(e): uuid.uuid4().hex for e in event_ids})
    except RedisError as exc:
        log.warning("could not mark %d event page(s) changed: %s", len(event_ids), exc)
        return False
    return True


async def read(client: redis.Redis, event_id: str) -> tuple[bytes, bytes | None]:
    """(change token, cached page if it belongs to that token). Raises RedisError."""
    raw_token, stored = await client.mget(_token_key(event_id), _page_key(event_id))
    token = raw_token if isinstance(raw_token, bytes) else b""
    if isinstance(stored, bytes):
        stored_token, _, page = stored.partition(_SEPARATOR)
        if stored_token == token:
            return token, page
    return token, None


async def store(
    client: redis.Redis, event_id: str, token: bytes, page: bytes, ttl_seconds: float
) -> None:
    """Cache a page built after reading ``token``. Best effort: errors are logged only."""
    ttl_ms = int(min(ttl_seconds, MAX_PAGE_TTL_SECONDS) * 1000)
    if ttl_ms <= 0:
        return
    try:
        await client.set(_page_key(event_id), token + _SEPARATOR + page, px=ttl_ms)
    except RedisError as exc:
        log.info("could not cache event page %s: %s", event_id, exc)
