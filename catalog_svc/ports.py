"""What the catalog's use cases need from the outside, as ports: the adapters implement them
(``adapters/postgres.py``, ``adapters/page_cache.py``) and the unit tests fake them in memory
(``tests/unit/test_catalog_pages.py``, ``tests/unit/test_catalog_service.py``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from catalog_svc.domain import (
    Event,
    EventFilter,
    EventPage,
    NewTicket,
    Performer,
    RequestKey,
    Ticket,
    TicketSummary,
    Venue,
)

RenderPage = Callable[[EventPage, TicketSummary, str], bytes]
"""How a built page is kept and served: (the page, its ticket counts, its etag) -> bytes
(``catalog_svc.mapping.render_event_page``: the serialized FULL view)."""


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


class CatalogTransaction(Protocol):
    """The catalog's records inside one write transaction: everything commits together, or
    nothing does (an error raised inside rolls it all back, the request key's claim too).
    A missing record is NotFound with its reason (EVENT_NOT_FOUND, VENUE_NOT_FOUND, ...)."""

    async def once(self, key: RequestKey, action: Callable[[], Awaitable[str]]) -> str:
        """``action``'s answer (an id or a count, as text), run at most once per key: a retry
        with the same key and request gets the first answer back without running it again;
        the same key with another request is InvalidArgument(REQUEST_ID_REUSED). Without a
        request_id, ``action`` just runs."""
        ...

    async def venue(self, venue_id: str) -> Venue: ...

    async def performer(self, performer_id: str) -> Performer: ...

    async def event(self, event_id: str) -> Event: ...

    async def insert_venue(self, venue: Venue) -> Venue: ...

    async def update_venue(self, venue: Venue) -> tuple[Venue, list[str]]:
        """The venue as stored, and the ids of the events held there (their pages change)."""
        ...

    async def insert_performer(self, performer: Performer) -> Performer: ...

    async def update_performer(self, performer: Performer) -> tuple[Performer, list[str]]:
        """The performer as stored, and the ids of its events (their pages change)."""
        ...

    async def insert_event(self, event: Event) -> Event:
        """NotFound when the venue or performer is missing; FailedPrecondition
        (VENUE_TIME_CONFLICT) when the venue has another event at that time."""
        ...

    async def update_event(self, event: Event) -> Event: ...

    async def lock_event(self, event_id: str) -> tuple[Event, int]:
        """The event, locked against a concurrent inventory generation, and its ticket count."""
        ...

    async def insert_tickets(self, event: Event, tickets: Sequence[NewTicket]) -> None: ...


class CatalogStore(Protocol):
    """The catalog's records (Postgres): reads, each a snapshot of its own, and writes in one
    transaction (``write``). Database trouble is Unavailable."""

    async def get_event(self, event_id: str) -> Event: ...

    async def get_venue(self, venue_id: str) -> Venue: ...

    async def get_performer(self, performer_id: str) -> Performer: ...

    async def list_events(
        self, where: EventFilter, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[tuple[Event, Venue, Performer]]:
        """Up to ``limit`` events by (start time, id), after that key when given."""
        ...

    async def summaries(self, event_ids: Sequence[str]) -> dict[str, TicketSummary]:
        """Ticket counts of the events that have tickets (an event without any is absent)."""
        ...

    async def list_tickets(
        self,
        event_id: str,
        *,
        section: str | None,
        status: str | None,
        after: tuple[str, str, str] | None,
        limit: int,
    ) -> list[Ticket]:
        """Up to ``limit`` tickets by (section, row, seat), after that key when given;
        ``status`` is the effective one (a lapsed hold is available)."""
        ...

    def write(self) -> AbstractAsyncContextManager[CatalogTransaction]: ...
