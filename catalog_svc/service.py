"""Catalog use cases: the event page behind its cache, listings, and operator writes. They take
and return domain values and depend only on the ports (``catalog_svc.ports``); the servicer
translates protos to them (``catalog_svc.mapping``), ``catalog_svc.server`` wires them.

The event page is the hot read. It is built once from Postgres, serialized, and kept in Redis
under the event's change token (see ``ticketing_common.event_pages``); concurrent misses for one
event share a single build. Redis being down only costs speed: pages are then built from
Postgres on every call.

An operator write runs in one transaction of the store; a write that carries a request_id
claims it in that same transaction (AIP-155), so a retry replays the first answer (the record
it created, as it stands now, or the ticket count) instead of acting twice. After the commit the
pages it changed are marked so: the next read of each is built afresh.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter

from catalog_svc.domain import (
    Event,
    EventFilter,
    Performer,
    RequestKey,
    Ticket,
    TicketSummary,
    Venue,
    decode_page_token,
    encode_page_token,
    ensure_no_inventory,
    generate_inventory,
    next_hold_expiry,
    query_fingerprint,
    summarize,
)
from catalog_svc.domain import page_size as clamp_page_size
from catalog_svc.ports import (
    CacheUnavailable,
    CatalogStore,
    CatalogTransaction,
    PageCache,
    PageSource,
    RenderPage,
)
from ticketing_common import event_pages
from ticketing_common.pagination import invalid_page_token

log = logging.getLogger("catalog.pages")

PAGES = Counter(
    "ticketing_catalog_page_cache_total",
    "Event pages served: hit (from Redis), miss (built from Postgres), shared (a build already"
    " under way for the same page).",
    ["result"],
)

_ETAG_LENGTH = 16
VIEWS_KEPT = 64
VIEWS_MAX_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    etag: str
    payload: bytes  # the page as ``render`` made it (the servicer's FULL view)


class EventPages:
    def __init__(self, repository: PageSource, cache: PageCache | None, render: RenderPage) -> None:
        self._repository = repository
        self._cache = cache
        self._render = render
        self._building: dict[str, asyncio.Future[Page]] = {}
        self._views: collections.OrderedDict[tuple[str, str, str], bytes] = (
            collections.OrderedDict()
        )
        self._view_bytes = 0
        self._deriving: dict[tuple[str, str, str], asyncio.Future[bytes]] = {}

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
        result = Page(etag, self._render(page, summary, etag))
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

    async def view(
        self, event_id: str, page: Page, name: str, derive: Callable[[bytes], bytes]
    ) -> bytes:
        """A view derived from the page's payload (BASIC, AVAILABILITY, a read mask, the REST
        JSON): derived once per version of the page (its etag), on a worker thread (printing
        a big page takes a while; the event loop keeps serving meanwhile), concurrent readers
        of that version waiting for the one derivation; then kept for the next reads, the last
        ``VIEWS_KEPT`` of them (at most ``VIEWS_MAX_BYTES`` together) in this process."""
        key = (event_id, page.etag, name)
        derived = self._views.get(key)
        if derived is not None:
            self._views.move_to_end(key)
            return derived
        pending = self._deriving.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._deriving[key] = future
        try:
            derived = await asyncio.to_thread(derive, page.payload)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved when nobody else is waiting
            raise
        finally:
            del self._deriving[key]
        future.set_result(derived)
        self._views[key] = derived
        self._view_bytes += len(derived)
        while len(self._views) > VIEWS_KEPT or self._view_bytes > VIEWS_MAX_BYTES:
            _, dropped = self._views.popitem(last=False)
            self._view_bytes -= len(dropped)
        return derived


# --- listings and operator writes -------------------------------------------------------

EVENTS_PAGE_SIZE, MAX_EVENTS_PAGE_SIZE = 50, 500
TICKETS_PAGE_SIZE, MAX_TICKETS_PAGE_SIZE = 500, 5000

_Record = TypeVar("_Record", Venue, Performer, Event)


@dataclasses.dataclass(frozen=True, slots=True)
class ListedEvent:
    event: Event
    venue: Venue
    performer: Performer
    summary: TicketSummary


@dataclasses.dataclass(frozen=True, slots=True)
class EventList:
    events: list[ListedEvent]
    next_page_token: str


@dataclasses.dataclass(frozen=True, slots=True)
class EventPageList:
    pages: list[Page]
    next_page_token: str


@dataclasses.dataclass(frozen=True, slots=True)
class TicketList:
    event: Event
    tickets: list[Ticket]
    next_page_token: str


@dataclasses.dataclass(frozen=True, slots=True)
class GeneratedTickets:
    count: int
    page: Page  # the event's page after the tickets were added


class Catalog:
    """The catalog's use cases, over its store and its event pages."""

    def __init__(self, store: CatalogStore, pages: EventPages) -> None:
        self._store = store
        self._pages = pages

    # --- reads -----------------------------------------------------------------------------

    async def event_page(self, event_id: str) -> Page:
        return await self._pages.get(event_id)

    async def event_page_view(
        self, event_id: str, name: str, derive: Callable[[bytes], bytes]
    ) -> tuple[Page, bytes]:
        """The event page and a view of it (``derive`` of its payload, ``name`` telling views
        apart), derived once per version of the page."""
        page = await self._pages.get(event_id)
        return page, await self._pages.view(event_id, page, name, derive)

    async def venue(self, venue_id: str) -> Venue:
        return await self._store.get_venue(venue_id)

    async def performer(self, performer_id: str) -> Performer:
        return await self._store.get_performer(performer_id)

    async def list_events(
        self, where: EventFilter, *, page_size: int, page_token: str
    ) -> EventList:
        """Events by start time with their venue, performer and ticket counts."""
        rows, token = await self._events(where, page_size, page_token)
        summaries = await self._store.summaries([event.id for event, _, _ in rows])
        listed = [
            ListedEvent(event, venue, performer, summaries.get(event.id) or TicketSummary())
            for event, venue, performer in rows
        ]
        return EventList(listed, token)

    async def list_event_pages(
        self, where: EventFilter, *, page_size: int, page_token: str
    ) -> EventPageList:
        """The same listing as whole event pages (tickets included), from the page cache."""
        rows, token = await self._events(where, page_size, page_token)
        return EventPageList([await self._pages.get(event.id) for event, _, _ in rows], token)

    async def _events(
        self, where: EventFilter, requested_size: int, page_token: str
    ) -> tuple[list[tuple[Event, Venue, Performer]], str]:
        fingerprint = query_fingerprint("events", dataclasses.astuple(where))
        after = _resume_key(decode_page_token(page_token, fingerprint), _event_key)
        limit = clamp_page_size(
            requested_size, default=EVENTS_PAGE_SIZE, maximum=MAX_EVENTS_PAGE_SIZE
        )
        rows = await self._store.list_events(where, after, limit + 1)
        if len(rows) <= limit:
            return rows, ""
        last = rows[limit - 1][0]
        return rows[:limit], encode_page_token(fingerprint, [last.start_time.isoformat(), last.id])

    async def list_tickets(
        self,
        event_id: str,
        *,
        section: str,
        status: str | None,
        page_size: int,
        page_token: str,
    ) -> TicketList:
        """An event's tickets by section, row and seat, optionally one section or one status."""
        fingerprint = query_fingerprint("tickets", event_id, section, status)
        after = _resume_key(decode_page_token(page_token, fingerprint), _ticket_key)
        limit = clamp_page_size(page_size, default=TICKETS_PAGE_SIZE, maximum=MAX_TICKETS_PAGE_SIZE)
        event = await self._store.get_event(event_id)
        tickets = await self._store.list_tickets(
            event_id, section=section or None, status=status, after=after, limit=limit + 1
        )
        if len(tickets) <= limit:
            return TicketList(event, tickets, "")
        last = tickets[limit - 1]
        token = encode_page_token(fingerprint, [last.section, last.row, last.seat])
        return TicketList(event, tickets[:limit], token)

    # --- operator writes -------------------------------------------------------------------

    async def create_venue(self, key: RequestKey, venue: Venue) -> Venue:
        venue.validate()
        return await self._create_once(key, lambda tx: tx.insert_venue(venue), _read_venue)

    async def create_performer(self, key: RequestKey, performer: Performer) -> Performer:
        performer.validate()
        return await self._create_once(
            key, lambda tx: tx.insert_performer(performer), _read_performer
        )

    async def create_event(self, key: RequestKey, event: Event) -> Event:
        event.validate()
        return await self._create_once(key, lambda tx: tx.insert_event(event), _read_event)

    async def update_venue(self, venue_id: str, change: Callable[[Venue], Venue]) -> Venue:
        """The venue with ``change`` applied to it as it stands; the pages of the events held
        there change with it."""
        return await self._update(venue_id, _read_venue, change, _write_venue)

    async def update_performer(
        self, performer_id: str, change: Callable[[Performer], Performer]
    ) -> Performer:
        return await self._update(performer_id, _read_performer, change, _write_performer)

    async def update_event(self, event_id: str, change: Callable[[Event], Event]) -> Event:
        return await self._update(event_id, _read_event, change, _write_event)

    async def generate_tickets(
        self, key: RequestKey, event_id: str, tier_prices_minor: Mapping[str, int]
    ) -> GeneratedTickets:
        """One ticket per seat of the event's venue, priced by tier, once per event: an event
        that has tickets is FailedPrecondition(TICKETS_ALREADY_GENERATED)."""
        async with self._store.write() as tx:

            async def generate() -> str:
                event, existing = await tx.lock_event(event_id)
                ensure_no_inventory(existing)
                venue = await tx.venue(event.venue_id)
                tickets = generate_inventory(venue.seat_map, dict(tier_prices_minor))
                await tx.insert_tickets(event, tickets)
                return str(len(tickets))

            count = int(await tx.once(key, generate))
        await self._pages.changed(event_id)
        return GeneratedTickets(count, await self._pages.get(event_id))

    async def _create_once(
        self,
        key: RequestKey,
        insert: Callable[[CatalogTransaction], Awaitable[_Record]],
        read: Callable[[CatalogTransaction, str], Awaitable[_Record]],
    ) -> _Record:
        async with self._store.write() as tx:
            created: list[_Record] = []

            async def create() -> str:
                created.append(await insert(tx))
                return created[0].id

            record_id = await tx.once(key, create)
            return created[0] if created else await read(tx, record_id)

    async def _update(
        self,
        record_id: str,
        read: Callable[[CatalogTransaction, str], Awaitable[_Record]],
        change: Callable[[_Record], _Record],
        write: Callable[[CatalogTransaction, _Record], Awaitable[tuple[_Record, Sequence[str]]]],
    ) -> _Record:
        async with self._store.write() as tx:
            current = await read(tx, record_id)
            record = dataclasses.replace(change(current), id=current.id)
            record.validate()
            updated, changed_events = await write(tx, record)
        await self._pages.changed(*changed_events)
        return updated


async def _read_venue(tx: CatalogTransaction, venue_id: str) -> Venue:
    return await tx.venue(venue_id)


async def _read_performer(tx: CatalogTransaction, performer_id: str) -> Performer:
    return await tx.performer(performer_id)


async def _read_event(tx: CatalogTransaction, event_id: str) -> Event:
    return await tx.event(event_id)


async def _write_venue(tx: CatalogTransaction, venue: Venue) -> tuple[Venue, Sequence[str]]:
    return await tx.update_venue(venue)


async def _write_performer(
    tx: CatalogTransaction, performer: Performer
) -> tuple[Performer, Sequence[str]]:
    return await tx.update_performer(performer)


async def _write_event(tx: CatalogTransaction, event: Event) -> tuple[Event, Sequence[str]]:
    return await tx.update_event(event), [event.id]


_Key = TypeVar("_Key")


def _resume_key(key: list[Any] | None, parse: Callable[[list[Any]], _Key]) -> _Key | None:
    """Where a listing resumes, from a page token's key; a key that does not parse (a token
    made by hand) is INVALID_PAGE_TOKEN, like a token of another query."""
    if key is None:
        return None
    try:
        return parse(key)
    except (ValueError, TypeError):
        raise invalid_page_token() from None


def _event_key(key: list[Any]) -> tuple[dt.datetime, str]:
    start, event_id = key
    start_time = dt.datetime.fromisoformat(start)
    if not isinstance(event_id, str) or start_time.tzinfo is None:
        raise ValueError(key)
    return start_time, event_id


def _ticket_key(key: list[Any]) -> tuple[str, str, str]:
    section, row, seat = key
    if not all(isinstance(part, str) for part in key):
        raise ValueError(key)
    return section, row, seat
