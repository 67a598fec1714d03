"""The drawn seat map in the browser (issue 12): the demo venues' drawings, seats greyed live
from WatchAvailability in a second buyer's browser, keyboard selection, and "best available".

Headless Chromium through tests/e2e/browser.mjs on the shared stack's gateway, as in
test_browser.py. The screenshots of the three drawings are left in tmp_path
(seat-map-arena.png, seat-map-theatre.png, seat-map-stadium.png) for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import grpc
import pytest
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.demo_data.tables import VENUE_SPECS
from tests.e2e.driver import ON_SALE, PNG, journey
from tests.helpers import make_event, make_venue

pytestmark = pytest.mark.integration

KIND_OF_VENUE = {spec.name: spec.kind for spec in VENUE_SPECS}


def _on_sale_demo_events(gateway: str) -> list[catalog_pb2.Event]:
    """The demo events a buyer can reserve on now (no queue), from the catalog."""
    now = dt.datetime.now(dt.UTC)
    with grpc.insecure_channel(gateway) as channel:
        found = catalog_pb2_grpc.CatalogServiceStub(channel).ListEvents(
            catalog_pb2.ListEventsRequest(page_size=500), timeout=30
        )
    return [
        e
        for e in found.events
        if e.venue.name in KIND_OF_VENUE
        and not e.queue_policy.enabled
        and e.on_sale_time.ToDatetime(dt.UTC) < now < e.start_time.ToDatetime(dt.UTC)
        and e.ticket_summary.available > 0
        and e.venue.seat_map.HasField("layout")
    ]


def _one_of_each_kind(events: list[catalog_pb2.Event]) -> dict[str, catalog_pb2.Event]:
    """An arena, a theatre and a stadium (one with a standing floor if there is one)."""
    chosen: dict[str, catalog_pb2.Event] = {}
    for name, kinds in (("arena", {"arena"}), ("theatre", {"theater"}), ("stadium", {"stadium"})):
        of_kind = [e for e in events if KIND_OF_VENUE[e.venue.name] in kinds]
        standing = [
            e for e in of_kind if any(s.standing_capacity for s in e.venue.seat_map.sections)
        ]
        if of_kind:
            chosen[name] = (standing or of_kind)[0]
    assert set(chosen) == {"arena", "theatre", "stadium"}, sorted(chosen)
    return chosen


def test_the_three_demo_layouts_are_drawn_and_differ(browser, tmp_path):
    """The arena bowl, the theatre's stalls and circle, the stadium with its standing floor:
    each drawing is a real picture (a good share of its pixels drawn), and no two are alike
    (pixels compared after decoding the PNG screenshots). Prints the draw times."""
    chosen = _one_of_each_kind(_on_sale_demo_events(browser.gateway))
    seen = journey(
        browser,
        "seat_map_screenshots",
        tmp_path,
        events=[{"name": name, "eventId": e.id} for name, e in chosen.items()],
    )
    maps = {m["name"]: m for m in seen["maps"]}
    for name, m in maps.items():
        shot = Path(m["path"])
        assert shot.read_bytes().startswith(PNG), name
        all_seats = min(t["ms"] for t in m["allSeats"])
        print(
            f"\n{name} ({chosen[name].venue.name}): {m['seats']} seats in {m['sections']} "
            f"sections; first draw {m['firstDrawMs']:.1f} ms, zoomed in {m['zoom']['ms']:.1f} ms "
            f"({m['zoom']['mode']}, {m['zoom']['seats']} seats), every seat {all_seats:.1f} ms; "
            f"screenshot {shot}"
        )
        # Every seat of the venue is in the drawing (sections first, seats when zoomed).
        capacity = sum(
            s.standing_capacity or sum(r.seat_count for r in s.rows)
            for s in chosen[name].venue.seat_map.sections
        )
        assert m["seats"] == capacity
        assert m["zoom"]["mode"] == "seats" or name == "stadium"
    drawn = seen["pixels"]["drawn"]
    names = [m["name"] for m in seen["maps"]]
    for name, image in zip(names, drawn, strict=True):
        print(f"{name}: {image['drawnShare']:.1%} of {image['width']}x{image['height']} drawn")
        assert image["drawnShare"] > 0.05, (name, image)
    for pair in seen["pixels"]["pairs"]:
        a, b = names[pair["a"]], names[pair["b"]]
        print(f"{a} vs {b}: {pair['differShare']:.1%} of the pixels differ")
        assert pair["differShare"] > 0.02, (a, b, pair)


def test_a_second_buyer_sees_held_seats_go_grey_and_cannot_pick_them(browser, tmp_path):
    """Two browsers on one event: A reserves two seats; B's map and seat list grey them
    within 2 s (timed from A's click on Reserve), and B's clicks on them (on the drawn map,
    and Enter in the seat list) are refused with a message. B's stream is then cut: the page
    reconnects and a seat A holds afterwards greys out too."""
    events = [e for e in _on_sale_demo_events(browser.gateway) if e.id != ON_SALE]
    event = next(e for e in events if KIND_OF_VENUE[e.venue.name] in {"hall", "theater", "arena"})
    suffix = uuid.uuid4().hex[:6]
    seen = journey(
        browser,
        "two_buyers_live",
        tmp_path,
        eventId=event.id,
        userA=f"e2e-map-a-{suffix}",
        userB=f"e2e-map-b-{suffix}",
    )
    first = seen["greyed"]["at"] - seen["clicked"]
    again = seen["greyedAgain"]["at"] - seen["clickedAgain"]
    print(
        f"\n{event.name}: B saw A's 2 seats grey {first} ms after A clicked Reserve "
        f"(A's reservation answered after {seen['reserved'] - seen['clicked']} ms); after B's "
        f"stream was cut and reconnected ({seen['reconnects']} reconnect), A's third seat "
        f"greyed after {again} ms"
    )
    assert seen["before"] == ["AVAILABLE", "AVAILABLE"]
    assert seen["after"] == ["HELD", "HELD"] and seen["listStates"] == ["taken", "taken"]
    assert first <= 2000 and again <= 2000
    assert "held or sold" in seen["mapRefusal"] and "held or sold" in seen["listRefusal"]
    assert seen["pickedByB"] == []
    assert seen["reconnects"] >= 1
    # What B saw is what booking holds: the seats are A's.
    with grpc.insecure_channel(browser.gateway) as channel:
        found = catalog_pb2_grpc.CatalogServiceStub(channel).ListTickets(
            catalog_pb2.ListTicketsRequest(event_id=event.id, page_size=5000), timeout=30
        )
    status = {t.id: t.status for t in found.tickets}
    for ticket_id in [*seen["ids"], seen["third"]]:
        assert status[ticket_id] == catalog_pb2.TICKET_STATUS_HELD


def test_a_seat_is_selected_with_the_keyboard_and_read_by_its_label(browser, tmp_path):
    """Focus a seat in the seat list, ArrowRight to the next, Enter: it is selected (pressed,
    on the map, in the total); its label reads like "Arena, row A, seat 2, £91.00"; one tab
    stop for the whole list (roving tabindex); ArrowDown goes to the row behind."""
    seen = journey(browser, "keyboard_select", tmp_path, eventId=ON_SALE)
    print(f"\nfocused: {seen['focused']['label']!r}; below it: {seen['below']!r}")
    label = seen["focused"]["label"]
    assert label != seen["firstLabel"]
    _section, row, seat, price = label.split(", ")
    assert row.startswith("row ") and seat.startswith("seat ") and price.startswith("£")
    assert seen["pressed"] == "true"
    assert seen["picked"] == [seen["focused"]["ticket"]]
    assert seen["selection"].startswith("1 seat")
    assert seen["byName"] == 1 and seen["tabStops"] == 1
    assert seen["below"].split(", ")[1] != row


def test_best_available_from_the_page_seats_a_party_together(browser, tmp_path):
    """Two seats, best available: the checkout shows two seats side by side in one row."""
    user = f"e2e-best-{uuid.uuid4().hex[:6]}"
    seen = journey(browser, "best_available", tmp_path, eventId=ON_SALE, user=user, quantity=2)
    first, second = (t.split(" · ") for t in seen["tickets"])
    print(f"\nbest available: {seen['tickets']}")
    assert first[:2] == second[:2]  # one section, one row
    numbers = sorted(int(t[2].removeprefix("seat ")) for t in (first, second))
    assert numbers[1] - numbers[0] == 1


def test_best_available_without_a_block_says_how_many_single_seats_remain(browser, tmp_path):
    """A row of three with its middle seat held: asking for two says that no two seats
    together are left and that two single seats remain (NO_ADJACENT_SEATS), no checkout."""
    operator = (("authorization", f"Bearer {browser.token('e2e-ops', role='operator')}"),)
    with grpc.insecure_channel(browser.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 1, 3)
        event = make_event(catalog, operator, venue.id, days_ahead=70)
        tickets = catalog.ListTickets(
            catalog_pb2.ListTicketsRequest(event_id=event.id), timeout=30
        ).tickets
        middle = next(t for t in tickets if t.seat == "2")
        booking_pb2_grpc.BookingServiceStub(channel).ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=middle.id),
            metadata=(("authorization", f"Bearer {browser.token('e2e-middle')}"),),
            timeout=30,
        )
    seen = journey(
        browser,
        "best_available",
        tmp_path,
        eventId=event.id,
        user=f"e2e-pair-{uuid.uuid4().hex[:6]}",
        quantity=2,
        expectRefusal=True,
    )
    print(f"\nrefusal shown: {seen['message']!r}")
    assert seen["reason"] == "NO_ADJACENT_SEATS"
    assert seen["remaining"] == "2"
    assert "2 single seats remain" in seen["message"]
