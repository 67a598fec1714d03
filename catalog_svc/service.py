"""Catalog use cases: the event page behind its cache, listings, and operator writes.

The event page is the hot read. It is built once from Postgres, serialized, and kept in Redis
under the event's change token (see ``ticketing_common.event_pages``); concurrent misses for one
event share a single build. Redis being down only costs speed: pages are then built from
Postgres on every call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging

from prometheus_client import Counter
from ticketing.catalog.v1 import catalog_pb2

from catalog_svc import mapping
from catalog_svc.domain import next_hold_expiry, summarize
from catalog_svc.ports import CacheUnavailable, PageCache, PageSource
from ticketing_common import event_pages

log = logging.getLogger("catalog.pages")

PAGES = Counter(
    "ticketing_catalog_page_cache_total",
    "Event pages served: hit (from Redis), miss (built from Postgres), shared (a build already"
    " under way for the same page).",
    ["result"],
)

_ETAG_LENGTH = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    etag: str
    payload: bytes  # a serialized catalog_pb2.Event, FULL view


class EventPages:
    def __init__(self, repository: PageSource, cache: PageCache | None) -> None:
        self._repository = repository
        self._cache = cache
        self._building: dict[str, asyncio.Future[Page]] = {}

    async def get(self, event_id: str) -> Page:
        token: bytes | None = None
        if self._cache is not None:
            try:
                token, cached = await self._cache.read(event_id)
            except CacheUnavailable as exc:
                log.info("page cache unavailable, reading Postgres: %s", exc)
            else:
                if cached is not None:
                    PAGES.labels("hit").inc()
                    return Page(cached[:_ETAG_LENGTH].decode(), cached[_ETAG_LENGTH:])
        key = f"{event_id}:{token!r}"
        pending = self._building.get(key)
        if pending is not None:
            PAGES.labels("shared").inc()
            return await asyncio.shield(pending)
        PAGES.labels("miss").inc()
        future: asyncio.Future[Page] = asyncio.get_running_loop().create_future()
        self._building[key] = future
        try:
            page = await self._build(event_id, token)
            future.set_result(page)
            return page
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved when nobody else is waiting
            raise
        finally:
            del self._building[key]

    async def _build(self, event_id: str, token: bytes | None) -> Page:
        page = await self._repository.event_page(event_id)
        summary = summarize(page.tickets)
        fingerprint = hashlib.blake2b(digest_size=8)
        fingerprint.update(
            f"{page.event.version}|{page.venue.update_time}|{page.performer.update_time}|"
            f"{len(page.tickets)}|".encode()
        )
        fingerprint.update("".join(t.status[0] for t in page.tickets).encode())
        etag = fingerprint.hexdigest()
        proto = mapping.event_to_proto(
            page.event,
            venue=page.venue,
            performer=page.performer,
            summary=summary,
            tickets=page.tickets,
            etag=etag,
        )
        result = Page(etag, proto.SerializeToString())
        if self._cache is not None and token is not None:
            ttl = event_pages.MAX_PAGE_TTL_SECONDS
            expiry = next_hold_expiry(page.tickets)
            if expiry is not None:
                ttl = min(ttl, (expiry - dt.datetime.now(dt.UTC)).total_seconds())
            await self._cache.store(event_id, token, etag.encode() + result.payload, ttl)
        return result

    async def changed(self, *event_ids: str) -> None:
        if self._cache is not None:
            await self._cache.mark_changed(*event_ids)


def basic_view(page: Page) -> catalog_pb2.Event:
    event = catalog_pb2.Event.FromString(page.payload)
    del event.tickets[:]
    return event
