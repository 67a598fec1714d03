"""The catalog's use cases (catalog_svc/service.py) against in-memory fakes of their ports
(catalog_svc/ports.py): what an operator notices. A bad write is refused naming the field and
leaves nothing behind; a retried request_id replays the first answer; an update applies to the
record as it stands and refreshes the pages it touches; an inventory is generated once, priced
by tier; listings page through in order and refuse a token of another query."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from catalog_svc.domain import (
    Event,
    EventFilter,
    EventPage,
    NewTicket,
    Performer,
    QueuePolicy,
    RequestKey,
    Row,
    SeatMap,
    Section,
    Ticket,
    TicketSummary,
    Venue,
    encode_page_token,
    query_fingerprint,
    summarize,
)
from catalog_svc.service import Catalog, EventPages
from ticketing_common.errors import FailedPrecondition, InvalidArgument, NotFound, Reason

START = dt.datetime(2031, 6, 1, 20, tzinfo=dt.UTC)
SEAT_MAP = SeatMap(
    (
        Section("Floor", "premium", (Row("A", 3), Row("B", 2))),
        Section("Balcony", "standard", (Row("1", 4),)),
    )
)


# --- fakes of the ports --------------------------------------------------------------------


@dataclasses.dataclass
class Records:
    venues: dict[str, Venue] = dataclasses.field(default_factory=dict)
    performers: dict[str, Performer] = dataclasses.field(default_factory=dict)
    events: dict[str, Event] = dataclasses.field(default_factory=dict)
    tickets: dict[str, list[Ticket]] = dataclasses.field(default_factory=dict)
    replies: dict[tuple[str, str, str], tuple[bytes, str]] = dataclasses.field(default_factory=dict)


def _missing(kind: str, reason: Reason, record_id: str) -> NotFound:
    return NotFound(f"no {kind} with id {record_id}", reason=reason)


class FakeTransaction:
    """CatalogTransaction over a copy of the records: the store keeps the copy on commit."""

    def __init__(self, records: Records, new_id: Callable[[], str]) -> None:
        self.records = records
        self._new_id = new_id

    async def once(self, key: RequestKey, action: Callable[[], Awaitable[str]]) -> str:
        if not key.request_id:
            return await action()
        claim = (key.user_id, key.method, key.request_id)
        if claim in self.records.replies:
            fingerprint, answer = self.records.replies[claim]
            if fingerprint != key.fingerprint:
                raise InvalidArgument("request_id reused", reason=Reason.REQUEST_ID_REUSED)
            return answer
        answer = await action()
        self.records.replies[claim] = (key.fingerprint, answer)
        return answer

    async def venue(self, venue_id: str) -> Venue:
        if venue_id not in self.records.venues:
            raise _missing("venue", Reason.VENUE_NOT_FOUND, venue_id)
        return self.records.venues[venue_id]

    async def performer(self, performer_id: str) -> Performer:
        if performer_id not in self.records.performers:
            raise _missing("performer", Reason.PERFORMER_NOT_FOUND, performer_id)
        return self.records.performers[performer_id]

    async def event(self, event_id: str) -> Event:
        if event_id not in self.records.events:
            raise _missing("event", Reason.EVENT_NOT_FOUND, event_id)
        return self.records.events[event_id]

    async def insert_venue(self, venue: Venue) -> Venue:
        stored = dataclasses.replace(venue, id=self._new_id(), capacity=venue.seat_map.capacity)
        self.records.venues[stored.id] = stored
        return stored

    async def update_venue(self, venue: Venue) -> tuple[Venue, list[str]]:
        await self.venue(venue.id)
        self.records.venues[venue.id] = venue
        return venue, [e.id for e in self.records.events.values() if e.venue_id == venue.id]

    async def insert_performer(self, performer: Performer) -> Performer:
        stored = dataclasses.replace(performer, id=self._new_id())
        self.records.performers[stored.id] = stored
        return stored

    async def update_performer(self, performer: Performer) -> tuple[Performer, list[str]]:
        await self.performer(performer.id)
        self.records.performers[performer.id] = performer
        events = [e.id for e in self.records.events.values() if e.performer_id == performer.id]
        return performer, events

    async def insert_event(self, event: Event) -> Event:
        await self.venue(event.venue_id)
        await self.performer(event.performer_id)
        stored = dataclasses.replace(event, id=self._new_id())
        self.records.events[stored.id] = stored
        return stored

    async def update_event(self, event: Event) -> Event:
        await self.event(event.id)
        self.records.events[event.id] = event
        return event

    async def lock_event(self, event_id: str) -> tuple[Event, int]:
        return await self.event(event_id), len(self.records.tickets.get(event_id, []))

    async def insert_tickets(self, event: Event, tickets: Sequence[NewTicket]) -> None:
        self.records.tickets.setdefault(event.id, []).extend(
            Ticket(self._new_id(), t.section, t.row, t.seat, t.price_minor, "available", None)
            for t in tickets
        )


class FakeStore:
    """CatalogStore and PageSource in memory; a write commits only if nothing was raised."""

    def __init__(self) -> None:
        self.records = Records()
        self.commits = 0
        self._ids = itertools.count(1)

    def new_id(self) -> str:
        return str(uuid.UUID(int=next(self._ids)))

    @asynccontextmanager
    async def write(self) -> AsyncIterator[FakeTransaction]:
        tx = FakeTransaction(copy.deepcopy(self.records), self.new_id)
        yield tx
        self.records = tx.records
        self.commits += 1

    async def get_event(self, event_id: str) -> Event:
        return await FakeTransaction(self.records, self.new_id).event(event_id)

    async def get_venue(self, venue_id: str) -> Venue:
        return await FakeTransaction(self.records, self.new_id).venue(venue_id)

    async def get_performer(self, performer_id: str) -> Performer:
        return await FakeTransaction(self.records, self.new_id).performer(performer_id)

    async def list_events(
        self, where: EventFilter, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[tuple[Event, Venue, Performer]]:
        events = sorted(self.records.events.values(), key=lambda e: (e.start_time, e.id))
        chosen = [
            e
            for e in events
            if where.venue_id in (None, e.venue_id)
            and where.performer_id in (None, e.performer_id)
            and where.type in (None, e.type)
            and (where.start_after is None or e.start_time >= where.start_after)
            and (where.start_before is None or e.start_time < where.start_before)
            and (after is None or (e.start_time, e.id) > after)
        ]
        return [
            (e, self.records.venues[e.venue_id], self.records.performers[e.performer_id])
            for e in chosen[:limit]
        ]

    async def summaries(self, event_ids: Sequence[str]) -> dict[str, TicketSummary]:
        return {
            i: summarize(self.records.tickets[i]) for i in event_ids if i in self.records.tickets
        }

    async def list_tickets(
        self,
        event_id: str,
        *,
        section: str | None,
        status: str | None,
        after: tuple[str, str, str] | None,
        limit: int,
    ) -> list[Ticket]:
        tickets = sorted(self.records.tickets.get(event_id, []), key=lambda t: t[1:4])
        return [
            t
            for t in tickets
            if section in (None, t.section)
            and status in (None, t.status)
            and (after is None or (t.section, t.row, t.seat) > after)
        ][:limit]

    async def event_page(self, event_id: str) -> EventPage:
        event = await self.get_event(event_id)
        return EventPage(
            event,
            self.records.venues[event.venue_id],
            self.records.performers[event.performer_id],
            list(self.records.tickets.get(event_id, [])),
        )


class RecordingCache:
    """A page cache that never has the page (every read builds it) and notes what changed."""

    def __init__(self) -> None:
        self.changed: list[str] = []

    async def read(self, event_id: str) -> tuple[bytes, bytes | None]:
        return b"", None

    async def store(self, event_id: str, token: bytes, page: bytes, ttl_seconds: float) -> None:
        pass

    async def mark_changed(self, *event_ids: str) -> None:
        self.changed.extend(event_ids)


def render(page: EventPage, summary: TicketSummary, etag: str) -> bytes:
    return f"{page.event.id}|{page.venue.name}|{summary.total}|{summary.available}".encode()


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def cache() -> RecordingCache:
    return RecordingCache()


@pytest.fixture
def catalog(store: FakeStore, cache: RecordingCache) -> Catalog:
    return Catalog(store, EventPages(store, cache, render))


def key(request_id: str = "", request: bytes = b"request", method: str = "Create") -> RequestKey:
    return RequestKey("ops-alice", method, request_id, request)


NO_KEY = key()


def a_venue(**changes: object) -> Venue:
    venue = Venue("", "Hall", "1 Road", "Lisbon", "", "PT", 38.7, -9.1, "Europe/Lisbon", SEAT_MAP)
    return dataclasses.replace(venue, **changes)  # type: ignore[arg-type]


def an_event(venue_id: str, performer_id: str, days: int = 0, **changes: object) -> Event:
    start = START + dt.timedelta(days=days)
    event = Event(
        "", "Night", "", "concert", venue_id, performer_id, start, start + dt.timedelta(hours=3),
        start - dt.timedelta(days=30), QueuePolicy(), 4, "EUR",
    )  # fmt: skip
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


async def a_scene(catalog: Catalog, events: int = 1) -> tuple[Venue, Performer, list[Event]]:
    venue = await catalog.create_venue(NO_KEY, a_venue())
    performer = await catalog.create_performer(NO_KEY, Performer("", "Band", genre="rock"))
    made = [
        await catalog.create_event(NO_KEY, an_event(venue.id, performer.id, days=i))
        for i in range(events)
    ]
    return venue, performer, made


# --- operator writes -------------------------------------------------------------------------


async def test_a_venue_with_a_bad_seat_map_is_refused_naming_the_field_and_nothing_is_stored(
    catalog: Catalog, store: FakeStore
) -> None:
    bad = SeatMap((Section("Floor", "premium", (Row("A", 3), Row("A", 2))),))
    with pytest.raises(InvalidArgument) as err:
        await catalog.create_venue(NO_KEY, a_venue(seat_map=bad))
    assert err.value.metadata == {"field": "seat_map"}
    with pytest.raises(InvalidArgument) as err:
        await catalog.create_venue(NO_KEY, a_venue(country_code="Portugal"))
    assert err.value.metadata == {"field": "country_code"}
    assert store.records.venues == {} and store.commits == 0


async def test_an_event_that_ends_before_it_starts_is_refused_naming_end_time(
    catalog: Catalog, store: FakeStore
) -> None:
    venue, performer, _ = await a_scene(catalog, events=0)
    backwards = an_event(venue.id, performer.id, end_time=START - dt.timedelta(hours=1))
    with pytest.raises(InvalidArgument) as err:
        await catalog.create_event(NO_KEY, backwards)
    assert err.value.metadata == {"field": "end_time"}
    assert store.records.events == {}


async def test_an_event_at_a_venue_that_does_not_exist_is_not_found(catalog: Catalog) -> None:
    _, performer, _ = await a_scene(catalog, events=0)
    with pytest.raises(NotFound) as err:
        await catalog.create_event(NO_KEY, an_event(str(uuid.uuid4()), performer.id))
    assert err.value.reason == Reason.VENUE_NOT_FOUND


async def test_a_retried_create_replays_the_first_record_and_a_reused_id_is_refused(
    catalog: Catalog, store: FakeStore
) -> None:
    retry = key("req-1", b"Once Only")
    first = await catalog.create_performer(retry, Performer("", "Once Only"))
    again = await catalog.create_performer(retry, Performer("", "Once Only"))
    assert again == first
    assert [p.name for p in store.records.performers.values()] == ["Once Only"]
    with pytest.raises(InvalidArgument) as err:
        await catalog.create_performer(key("req-1", b"Other"), Performer("", "Other"))
    assert err.value.reason == Reason.REQUEST_ID_REUSED
    # The same request_id of another operator, or of another method, is another request.
    other = await catalog.create_performer(
        RequestKey("ops-bob", "Create", "req-1", b"Once Only"), Performer("", "Once Only")
    )
    assert other.id != first.id
    # Without a request_id every call creates.
    await catalog.create_performer(NO_KEY, Performer("", "Twice"))
    await catalog.create_performer(NO_KEY, Performer("", "Twice"))
    assert len(store.records.performers) == 4


async def test_a_replayed_create_shows_the_record_as_it_stands(catalog: Catalog) -> None:
    retry = key("req-venue", b"Hall")
    created = await catalog.create_venue(retry, a_venue())
    await catalog.update_venue(created.id, lambda v: dataclasses.replace(v, name="New Hall"))
    replayed = await catalog.create_venue(retry, a_venue())
    assert replayed.id == created.id and replayed.name == "New Hall"


async def test_an_update_applies_to_the_record_as_it_stands_and_refreshes_its_events_pages(
    catalog: Catalog, store: FakeStore, cache: RecordingCache
) -> None:
    venue, performer, events = await a_scene(catalog, events=2)
    assert (await catalog.event_page(events[0].id)).payload.split(b"|")[1] == b"Hall"
    # The change cannot move the record to another id.
    renamed = await catalog.update_venue(
        venue.id, lambda v: dataclasses.replace(v, name="Coliseu", id="elsewhere")
    )
    assert renamed.id == venue.id and renamed.city == "Lisbon" and renamed.name == "Coliseu"
    assert sorted(cache.changed) == sorted(e.id for e in events)
    assert (await catalog.event_page(events[0].id)).payload.split(b"|")[1] == b"Coliseu"
    cache.changed.clear()
    await catalog.update_performer(performer.id, lambda p: dataclasses.replace(p, genre="jazz"))
    assert sorted(cache.changed) == sorted(e.id for e in events)
    assert (await catalog.performer(performer.id)).genre == "jazz"
    cache.changed.clear()
    moved = await catalog.update_event(
        events[1].id, lambda e: dataclasses.replace(e, max_tickets_per_user=2)
    )
    assert moved.max_tickets_per_user == 2 and cache.changed == [events[1].id]


async def test_an_update_that_breaks_a_rule_is_refused_and_changes_nothing(
    catalog: Catalog, store: FakeStore, cache: RecordingCache
) -> None:
    _, _, (event,) = await a_scene(catalog)
    with pytest.raises(InvalidArgument) as err:
        await catalog.update_event(
            event.id, lambda e: dataclasses.replace(e, end_time=e.start_time - dt.timedelta(1))
        )
    assert err.value.metadata == {"field": "end_time"}
    assert store.records.events[event.id] == event
    assert cache.changed == []
    with pytest.raises(NotFound) as missing:
        await catalog.update_event(str(uuid.uuid4()), lambda e: e)
    assert missing.value.reason == Reason.EVENT_NOT_FOUND


async def test_tickets_are_generated_once_one_per_seat_priced_by_tier(
    catalog: Catalog, store: FakeStore, cache: RecordingCache
) -> None:
    _, _, (event,) = await a_scene(catalog)
    prices = {"premium": 9000, "standard": 4000}
    retry = key("gen-1", b"prices", method="GenerateTickets")
    generated = await catalog.generate_tickets(retry, event.id, prices)
    assert generated.count == SEAT_MAP.capacity == 9
    assert generated.page.payload == f"{event.id}|Hall|9|9".encode()
    assert cache.changed == [event.id]
    tickets = store.records.tickets[event.id]
    assert {(t.section, t.price_minor) for t in tickets} == {("Floor", 9000), ("Balcony", 4000)}
    # A retry of the same request gets the same answer, without a second inventory.
    replayed = await catalog.generate_tickets(retry, event.id, prices)
    assert replayed.count == 9 and len(store.records.tickets[event.id]) == 9
    with pytest.raises(FailedPrecondition) as err:
        await catalog.generate_tickets(NO_KEY, event.id, prices)
    assert err.value.reason == Reason.TICKETS_ALREADY_GENERATED
    assert len(store.records.tickets[event.id]) == 9


async def test_a_refused_generation_leaves_no_tickets_and_does_not_use_up_its_request_id(
    catalog: Catalog, store: FakeStore
) -> None:
    _, _, (event,) = await a_scene(catalog)
    with pytest.raises(InvalidArgument) as err:
        await catalog.generate_tickets(key("gen-2", b"half"), event.id, {"premium": 9000})
    assert err.value.metadata == {"field": "tier_prices_minor"}
    assert event.id not in store.records.tickets
    with pytest.raises(InvalidArgument) as err:
        await catalog.generate_tickets(NO_KEY, event.id, {"premium": 1, "standard": -1})
    assert err.value.metadata == {"field": "tier_prices_minor"}
    fixed = await catalog.generate_tickets(
        key("gen-2", b"whole"), event.id, {"premium": 9000, "standard": 4000}
    )
    assert fixed.count == 9
    with pytest.raises(NotFound) as missing:
        await catalog.generate_tickets(NO_KEY, str(uuid.uuid4()), {})
    assert missing.value.reason == Reason.EVENT_NOT_FOUND


# --- listings --------------------------------------------------------------------------------


async def test_events_page_through_in_start_order_with_their_ticket_counts(
    catalog: Catalog,
) -> None:
    venue, _, events = await a_scene(catalog, events=5)
    await catalog.generate_tickets(NO_KEY, events[0].id, {"premium": 10, "standard": 5})
    where = EventFilter(venue_id=venue.id)
    seen: list[str] = []
    token, pages = "", 0
    while True:
        listed = await catalog.list_events(where, page_size=2, page_token=token)
        seen.extend(e.event.id for e in listed.events)
        pages += 1
        token = listed.next_page_token
        if not token:
            break
    assert seen == [e.id for e in events] and pages == 3
    first = (await catalog.list_events(where, page_size=1, page_token="")).events[0]
    assert first.summary.total == 9 and first.summary.min_available_price_minor == 5
    second = (await catalog.list_events(where, page_size=0, page_token="")).events[1]
    assert second.summary == TicketSummary() and second.summary.sold_out
    full = await catalog.list_event_pages(where, page_size=2, page_token="")
    assert [p.payload.split(b"|")[0].decode() for p in full.pages] == [e.id for e in events[:2]]
    assert full.next_page_token


async def test_a_page_token_of_another_query_or_made_by_hand_is_refused(catalog: Catalog) -> None:
    venue, _, _ = await a_scene(catalog, events=3)
    where = EventFilter(venue_id=venue.id)
    token = (await catalog.list_events(where, page_size=1, page_token="")).next_page_token
    with pytest.raises(InvalidArgument) as err:
        await catalog.list_events(EventFilter(type="sports"), page_size=1, page_token=token)
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    forged = encode_page_token(
        query_fingerprint("events", dataclasses.astuple(where)), ["yesterday", 7]
    )
    with pytest.raises(InvalidArgument) as err:
        await catalog.list_events(where, page_size=1, page_token=forged)
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    with pytest.raises(InvalidArgument) as err:
        await catalog.list_events(where, page_size=-1, page_token="")
    assert err.value.metadata == {"field": "page_size"}


async def test_tickets_page_through_one_section_without_gaps(catalog: Catalog) -> None:
    _, _, (event,) = await a_scene(catalog)
    await catalog.generate_tickets(NO_KEY, event.id, {"premium": 10, "standard": 5})
    seats: list[tuple[str, str]] = []
    token = ""
    while True:
        listed = await catalog.list_tickets(
            event.id, section="Floor", status=None, page_size=2, page_token=token
        )
        assert listed.event.id == event.id
        seats.extend((t.row, t.seat) for t in listed.tickets)
        token = listed.next_page_token
        if not token:
            break
    assert seats == [("A", "1"), ("A", "2"), ("A", "3"), ("B", "1"), ("B", "2")]
    floor = await catalog.list_tickets(
        event.id, section="Floor", status=None, page_size=2, page_token=""
    )
    with pytest.raises(InvalidArgument) as err:
        await catalog.list_tickets(
            event.id, section="Balcony", status=None, page_size=2, page_token=floor.next_page_token
        )
    assert err.value.reason == Reason.INVALID_PAGE_TOKEN
    with pytest.raises(NotFound) as missing:
        await catalog.list_tickets(
            str(uuid.uuid4()), section="", status=None, page_size=0, page_token=""
        )
    assert missing.value.reason == Reason.EVENT_NOT_FOUND
