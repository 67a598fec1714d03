"""The event page use case against in-memory fakes of its ports (catalog_svc/ports.py): a surge
of misses for one event is one build, a cached page is served without Postgres, a change is seen
at the next read, a cache that is down only costs speed, and a page is never kept past the next
hold that lapses."""

import asyncio
import datetime as dt
import json

import pytest
from google.protobuf import field_mask_pb2, json_format
from ticketing.catalog.v1 import catalog_pb2

from catalog_svc.domain import (
    Event,
    EventPage,
    Performer,
    QueuePolicy,
    Row,
    SeatMap,
    Section,
    Ticket,
    Venue,
    summarize,
)
from catalog_svc.mapping import event_json, event_view, read_mask_paths, render_event_page
from catalog_svc.ports import CacheUnavailable
from catalog_svc.service import Catalog, EventPages
from ticketing_common.errors import InvalidArgument

NOW = dt.datetime(2031, 5, 1, 12, tzinfo=dt.UTC)


def page(event_id: str, held_until: dt.datetime | None = None) -> EventPage:
    seat_map = SeatMap((Section("Stalls", "standard", (Row("A", 2),)),))
    venue = Venue("v1", "Hall", "1 Road", "Lisbon", "", "PT", 38.7, -9.1, "Europe/Lisbon", seat_map)
    event = Event(
        event_id, "Night", "", "concert", "v1", "p1", NOW, NOW + dt.timedelta(hours=3),
        NOW - dt.timedelta(days=1), QueuePolicy(), 4, "EUR",
    )  # fmt: skip
    tickets = [
        Ticket("t1", "Stalls", "A", "1", 5000, "held" if held_until else "available", held_until),
        Ticket("t2", "Stalls", "A", "2", 5000, "available", None),
    ]
    return EventPage(event, venue, Performer("p1", "Band"), tickets)


class FakeSource:
    def __init__(self, held_until: dt.datetime | None = None) -> None:
        self.reads = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.held_until = held_until

    async def event_page(self, event_id: str) -> EventPage:
        self.reads += 1
        await self.gate.wait()
        return page(event_id, self.held_until)


class FakeCache:
    def __init__(self) -> None:
        self.tokens: dict[str, bytes] = {}
        self.pages: dict[str, tuple[bytes, bytes, float]] = {}
        self.down = False

    async def read(self, event_id: str) -> tuple[bytes, bytes | None]:
        if self.down:
            raise CacheUnavailable("down")
        token = self.tokens.get(event_id, b"")
        stored = self.pages.get(event_id)
        return token, stored[1] if stored and stored[0] == token else None

    async def store(self, event_id: str, token: bytes, page: bytes, ttl_seconds: float) -> None:
        self.pages[event_id] = (token, page, ttl_seconds)

    async def mark_changed(self, *event_ids: str) -> None:
        for event_id in event_ids:
            self.tokens[event_id] = self.tokens.get(event_id, b"") + b"+"


async def test_a_surge_of_misses_for_one_event_is_one_build():
    source, cache = FakeSource(), FakeCache()
    pages = EventPages(source, cache, render_event_page)
    source.gate.clear()
    waiting = [asyncio.create_task(pages.get("e1")) for _ in range(50)]
    await asyncio.sleep(0)
    source.gate.set()
    built = await asyncio.gather(*waiting)
    assert source.reads == 1
    assert len({p.payload for p in built}) == 1
    assert catalog_pb2.Event.FromString(built[0].payload).id == "e1"


async def test_a_cached_page_is_served_without_the_source_until_the_event_changes():
    source, cache = FakeSource(), FakeCache()
    pages = EventPages(source, cache, render_event_page)
    first = await pages.get("e1")
    again = await pages.get("e1")
    assert source.reads == 1 and again == first
    await pages.changed("e1")
    await pages.get("e1")
    assert source.reads == 2


async def test_a_cache_that_is_down_only_costs_speed():
    source, cache = FakeSource(), FakeCache()
    cache.down = True
    pages = EventPages(source, cache, render_event_page)
    results = [await pages.get("e1") for _ in range(3)]
    assert source.reads == 3
    assert len({r.etag for r in results}) == 1


async def test_a_page_is_not_kept_past_the_next_hold_that_lapses():
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    source, cache = FakeSource(held_until=soon), FakeCache()
    await EventPages(source, cache, render_event_page).get("e1")
    _, _, ttl = cache.pages["e1"]
    assert 0 < ttl <= 5


async def test_the_views_of_a_page_basic_availability_and_a_read_mask():
    pages = EventPages(FakeSource(held_until=NOW), FakeCache(), render_event_page)
    built = await pages.get("e1")
    basic = catalog_pb2.Event.FromString(
        event_view(built.payload, catalog_pb2.EVENT_VIEW_BASIC, ())
    )
    assert not basic.tickets and basic.ticket_summary.total == 2 and basic.venue.name == "Hall"
    assert not basic.HasField("availability")
    seats = catalog_pb2.Event.FromString(
        event_view(built.payload, catalog_pb2.EVENT_VIEW_AVAILABILITY, ())
    )
    assert not seats.tickets and seats.name == "Night"
    (stalls,) = seats.availability.sections
    assert stalls.section == "Stalls"
    assert [(r.status, r.count) for r in stalls.runs] == [
        (catalog_pb2.TICKET_STATUS_HELD, 1),
        (catalog_pb2.TICKET_STATUS_AVAILABLE, 1),
    ]
    masked = catalog_pb2.Event.FromString(
        event_view(built.payload, catalog_pb2.EVENT_VIEW_FULL, ("name", "ticket_summary.total"))
    )
    assert masked.name == "Night" and masked.ticket_summary.total == 2
    assert not masked.tickets and not masked.venue.name and not masked.ticket_summary.available


def test_a_read_mask_path_the_event_lacks_is_invalid_argument_naming_it():
    assert read_mask_paths(field_mask_pb2.FieldMask(paths=["name", "venue.city"])) == (
        "name",
        "venue.city",
    )
    with pytest.raises(InvalidArgument) as refused:
        read_mask_paths(field_mask_pb2.FieldMask(paths=["name", "nope", "venue.nope"]))
    assert refused.value.metadata["field"] == "read_mask"
    assert refused.value.metadata["paths"] == "nope,venue.nope"
    assert "nope" in str(refused.value)


async def test_a_view_is_derived_once_per_version_of_the_page():
    source, cache = FakeSource(), FakeCache()
    catalog = Catalog(None, EventPages(source, cache, render_event_page))  # type: ignore[arg-type]
    derived: list[bytes] = []

    def derive(payload: bytes) -> bytes:
        derived.append(payload)
        return b"view"

    views = await asyncio.gather(
        *(catalog.event_page_view("e1", "basic", derive) for _ in range(20))
    )
    assert {view for _, view in views} == {b"view"}
    _, again = await catalog.event_page_view("e1", "basic", derive)
    assert again == b"view"
    assert len(derived) == 1  # 20 at once and one after: one derivation
    await EventPages(source, cache, render_event_page).changed("e1")
    source.held_until = NOW  # the page changes: a new etag
    await catalog.event_page_view("e1", "basic", derive)
    assert len(derived) == 2


def _json_format_reference(event: catalog_pb2.Event) -> bytes:
    """protobuf's JSON printer, fields in field-number order (as the C++ printer has them)."""

    def ordered(value, desc):
        if isinstance(value, dict) and desc is not None:
            return {
                f.json_name: ordered(value[f.json_name], f.message_type)
                for f in sorted(desc.fields, key=lambda f: f.number)
                if f.json_name in value
            }
        if isinstance(value, list):
            return [ordered(v, desc) for v in value]
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    doc = json_format.MessageToDict(event, always_print_fields_with_no_presence=True)
    return json.dumps(
        ordered(doc, event.DESCRIPTOR), separators=(",", ":"), ensure_ascii=False
    ).encode()


def test_the_rest_page_json_is_protobufs_json_of_the_page():
    rendered = page("e1", held_until=NOW)
    rendered.tickets.append(Ticket("t3", 'Balcón "Ä"', "", "7", 0, "booked", None))
    payload = render_event_page(rendered, summarize(rendered.tickets), "etag1")
    event = catalog_pb2.Event.FromString(payload)
    event.tickets[2].ClearField("price")
    event.tickets.add(id="t4", section="Pit", status=catalog_pb2.TICKET_STATUS_AVAILABLE)
    printed = event_json(event.SerializeToString())
    assert printed == _json_format_reference(event)
    assert json_format.Parse(printed, catalog_pb2.Event()) == event
    body = json.loads(printed)
    assert (
        list(body)[:3] == ["id", "name", "description"]
        and body["venue"]["location"]["latitude"] == 38.7
    )
    assert body["tickets"][0]["price"] == {"currencyCode": "EUR", "amountMinor": "5000"}
    # Every view prints the same way: BASIC has an empty ticket list, as the transcoder printed.
    basic = json.loads(event_json(event_view(payload, catalog_pb2.EVENT_VIEW_BASIC, ())))
    assert basic["tickets"] == [] and basic["ticketSummary"]["total"] == 3


def test_printing_from_the_previous_versions_tickets_prints_the_same_page():
    rendered = page("e1")
    first = render_event_page(rendered, summarize(rendered.tickets), "v1")
    memo: dict = {}
    assert event_json(first, memo) == event_json(first) and len(memo) == 2
    changed = page("e1", held_until=NOW)  # t1 is held now
    second = render_event_page(changed, summarize(changed.tickets), "v2")
    printed = event_json(second, memo)
    assert printed == event_json(second) and len(memo) == 3
    assert json.loads(printed)["tickets"][0]["status"] == "TICKET_STATUS_HELD"
