"""The demo data generator: deterministic, realistic, and big enough (no database here)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from deploy import demo_data
from deploy.demo_data import (
    DEMO_EVENT_ID,
    EVENT_TYPES,
    HOT_EVENT_ID,
    PRICE_TIERS,
    DemoData,
    Event,
    Venue,
    generate,
)

TODAY = date(2026, 3, 14)


@pytest.fixture(scope="module")
def full() -> DemoData:
    return generate(today=TODAY)


@pytest.fixture(scope="module")
def small() -> DemoData:
    return generate(small=True, today=TODAY)


def one_event_per_venue(data: DemoData) -> list[Event]:
    firsts: dict[uuid.UUID, Event] = {}
    for event in data.events:
        firsts.setdefault(event.venue_id, event)
    return list(firsts.values())


def seats_of(venue: Venue) -> set[tuple[str, str, str]]:
    """Every seat of the map; a standing section's places have no row ("", place number)."""
    return {
        (section.name, row.label, str(seat))
        for section in venue.sections
        for row in section.rows
        for seat in range(1, row.seats + 1)
    } | {
        (section.name, "", str(place))
        for section in venue.sections
        for place in range(1, section.standing_capacity + 1)
    }


def test_generator_is_deterministic(full: DemoData) -> None:
    again = generate(today=TODAY)
    assert again == full
    for event in full.events[:5]:
        assert list(again.tickets(event)) == list(full.tickets(event))


def test_ids_do_not_depend_on_the_day(full: DemoData) -> None:
    later = generate(today=TODAY + timedelta(days=37))
    assert [v.id for v in later.venues] == [v.id for v in full.venues]
    assert [p.id for p in later.performers] == [p.id for p in full.performers]
    assert {e.id for e in later.events} == {e.id for e in full.events}
    event = full.event(DEMO_EVENT_ID)
    moved = later.event(DEMO_EVENT_ID)
    # Same wall-clock time 37 days later (UTC may differ by an hour across a DST change).
    assert abs(moved.start_time - event.start_time - timedelta(days=37)) <= timedelta(hours=1)
    assert [t.id for t in later.tickets(moved)] == [t.id for t in full.tickets(event)]


def test_well_known_ids_are_the_documented_ones(full: DemoData) -> None:
    assert str(HOT_EVENT_ID) == "3038521a-4098-53b8-a8fa-76a0ca81e121"
    assert str(DEMO_EVENT_ID) == "03a67087-67cc-5c61-b94c-c5f5e083f9f7"
    assert demo_data.demo_id("event/wembley-stadium/59") == HOT_EVENT_ID
    assert demo_data.demo_id("event/royal-albert-hall/11") == DEMO_EVENT_ID
    assert full.event(HOT_EVENT_ID).name == demo_data.HOT_EVENT_NAME
    assert full.event(DEMO_EVENT_ID).name == demo_data.DEMO_EVENT_NAME


def test_hot_event_is_a_queued_stadium_sale_opening_soon(full: DemoData) -> None:
    hot = full.event(HOT_EVENT_ID)
    venue = full.venue(hot)
    end_of_today = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC) + timedelta(days=1)
    assert venue.kind == "stadium" and venue.capacity >= 50_000
    assert hot.queue_enabled
    assert (
        hot.queue_admission_rate_per_minute,
        hot.queue_max_active,
        hot.queue_admission_ttl_seconds,
    ) == (600, 500, 600)
    assert end_of_today <= hot.on_sale_time <= end_of_today + timedelta(days=1)
    assert hot.start_time > hot.on_sale_time + timedelta(days=30)
    assert [e.id for e in full.events if e.queue_enabled] == [HOT_EVENT_ID]


def test_demo_event_is_on_sale_without_a_queue(full: DemoData) -> None:
    event = full.event(DEMO_EVENT_ID)
    start_of_today = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC)
    assert event.on_sale_time < start_of_today < event.start_time
    assert not event.queue_enabled


def test_full_set_has_at_least_a_million_tickets(full: DemoData) -> None:
    # Counted from the seat maps, without producing a million rows.
    assert full.total_tickets() >= 1_000_000


def test_ticket_count_matches_the_tickets_produced(full: DemoData, small: DemoData) -> None:
    for data, events in ((full, one_event_per_venue(full)), (small, small.events)):
        for event in events:
            assert sum(1 for _ in data.tickets(event)) == data.ticket_count(event), event.name


def test_full_events_sell_exactly_the_seats_of_the_map(full: DemoData) -> None:
    for event in one_event_per_venue(full):
        venue = full.venue(event)
        tickets = list(full.tickets(event))
        assert {(t.section, t.row_label, t.seat_label) for t in tickets} == seats_of(venue)
        assert len(tickets) == venue.capacity
        assert len({t.id for t in tickets}) == len(tickets)


def test_tickets_are_priced_by_section_tier(full: DemoData, small: DemoData) -> None:
    for data in (full, small):
        for event in data.events[:10]:
            tiers = {s.name: s.price_tier for s in data.venue(event).sections}
            for ticket in data.tickets(event):
                assert ticket.event_id == event.id and ticket.currency == event.currency
                assert ticket.price_minor == event.prices[tiers[ticket.section]]


def test_small_set(small: DemoData) -> None:
    assert len(small.events) == 20
    assert 4_000 <= small.total_tickets() <= 6_000
    assert {e.type for e in small.events} == set(EVENT_TYPES)
    assert {HOT_EVENT_ID, DEMO_EVENT_ID} <= {e.id for e in small.events}
    assert len(small.venues) == 25
    for event in small.events:
        venue = small.venue(event)
        tickets = list(small.tickets(event))
        assert {(t.section, t.row_label, t.seat_label) for t in tickets} <= seats_of(venue)
        # An allocation is spread over the house: more than one price.
        assert len({t.price_minor for t in tickets}) > 1


def test_seat_maps_are_well_formed(full: DemoData) -> None:
    """The rules seat_map_capacity() enforces in the database."""
    for venue in full.venues:
        document = venue.seat_map()
        names = [section["name"] for section in document["sections"]]
        assert len(names) == len(set(names)), venue.name
        for section in document["sections"]:
            assert section["name"] and section["price_tier"] in PRICE_TIERS
            labels = [row["label"] for row in section["rows"]]
            if "standing_capacity" in section:
                assert not labels and section["standing_capacity"] > 0, venue.name
                continue
            assert labels and len(labels) == len(set(labels)), (venue.name, section["name"])
            assert all(isinstance(r["seats"], int) and r["seats"] > 0 for r in section["rows"])
        assert venue.capacity == sum(
            section.get("standing_capacity", 0) + sum(row["seats"] for row in section["rows"])
            for section in document["sections"]
        )


def test_stadiums_have_a_standing_floor_and_clubs_standing_room(full: DemoData) -> None:
    for venue in full.venues:
        standing = [s.name for s in venue.sections if s.standing_capacity]
        if venue.kind == "stadium":
            assert standing == [f"Floor {c}" for c in "ABCDEF"], venue.name
        elif venue.kind == "club":
            assert standing == ["General Admission"], venue.name
        else:
            assert not standing, venue.name


def test_venues_are_real_places(full: DemoData) -> None:
    assert len(full.venues) == 25
    assert len({v.id for v in full.venues}) == 25
    kinds = {v.kind for v in full.venues}
    assert {"stadium", "arena", "theater", "club"} <= kinds
    for venue in full.venues:
        assert -90 <= venue.latitude <= 90 and -180 <= venue.longitude <= 180, venue.name
        assert len(venue.country) == 2 and venue.country.isupper()
        # The zone exists, and its UTC offset agrees with the longitude (catches swapped or
        # mis-signed coordinates): about 15 degrees per hour, give or take politics and DST.
        offset = datetime(2026, 1, 15, 12, tzinfo=ZoneInfo(venue.timezone)).utcoffset()
        assert offset is not None
        assert abs(offset.total_seconds() / 3600 - venue.longitude / 15) < 3, venue.name


def test_performers(full: DemoData) -> None:
    names = [p.name for p in full.performers]
    assert 140 <= len(names) <= 170
    assert len(set(names)) == len(names)
    assert len({p.id for p in full.performers}) == len(names)
    assert all(p.genre and p.description for p in full.performers)


def test_calendar_is_plausible(full: DemoData) -> None:
    start_of_today = datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=UTC)
    assert {e.type for e in full.events} == set(EVENT_TYPES)
    on_sale = [e for e in full.events if e.on_sale_time <= start_of_today]
    assert len(on_sale) >= 20 and len(full.events) - len(on_sale) >= 20
    performers = {p.id for p in full.performers}
    for event in full.events:
        assert start_of_today < event.start_time < start_of_today + timedelta(days=190)
        assert event.on_sale_time <= event.start_time < event.end_time
        assert event.performer_id in performers
        prices = [event.prices[tier] for tier in PRICE_TIERS]
        assert prices == sorted(prices, reverse=True) and prices[-1] > 0, event.name
    by_venue: dict[uuid.UUID, list[Event]] = {}
    for event in full.events:
        by_venue.setdefault(event.venue_id, []).append(event)
    for events in by_venue.values():
        events.sort(key=lambda e: e.start_time)
        for before, after in itertools.pairwise(events):
            assert before.end_time <= after.start_time, (before.name, after.name)
