"""What the catalog's use cases need from the outside, as ports: the adapters implement them
(``adapters/postgres.py``, ``adapters/page_cache.py``) and the unit tests fake them
(``tests/unit/test_catalog_pages.py``)."""

from __future__ import annotations

from typing import Protocol

from catalog_svc.domain import EventPage


class PageSource(Protocol):
    """Where an event page is read from: one consistent snapshot (Postgres)."""

    async def event_page(self, event_id: str) -> EventPage: ...


class CacheUnavailable(Exception):
    """The page cache cannot answer now: the page is built from the source instead."""


class PageCache(Protocol):
    """Built pages, kept under the event's change token (ticketing_common.event_pages)."""

    async def read(self, event_id: str) -> tuple[bytes, bytes | None]:
        """(the event's change token, the page cached for that token if any); raises
        CacheUnavailable."""
        ...

    async def store(self, event_id: str, token: bytes, page: bytes, ttl_seconds: float) -> None:
        """Keep a page built after reading ``token``; best effort."""
        ...

    async def mark_changed(self, *event_ids: str) -> None:
        """A new change token: pages cached before it are not served again."""
        ...
