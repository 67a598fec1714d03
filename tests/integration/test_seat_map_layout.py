"""Seat-map drawings and standing sections, as a client of the gateway sees them (issue 12)."""

import concurrent.futures
import uuid

import grpc
import pytest
from google.protobuf import json_format
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2

from deploy.demo_data import DEMO_EVENT_ID
from tests.helpers import error_reason, make_event, rest

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-layout', role='operator')}"),)


def _pt(x: float, y: float) -> catalog_pb2.Point:
    return catalog_pb2.Point(x=x, y=y)


def _venue(seat_map: catalog_pb2.SeatMap) -> catalog_pb2.Venue:
    return catalog_pb2.Venue(
        name=f"Layout Hall {uuid.uuid4().hex[:6]}",
        city="Lisbon",
        country_code="PT",
        location=common_pb2.GeoPoint(latitude=38.72, longitude=-9.14),
        time_zone="Europe/Lisbon",
        seat_map=seat_map,
    )


def _drawn_seat_map() -> catalog_pb2.SeatMap:
    return catalog_pb2.SeatMap(
        layout=catalog_pb2.SeatMapLayout(
            width=40,
            height=30,
            stage=catalog_pb2.Polygon(points=[_pt(10, 1), _pt(30, 1), _pt(30, 5), _pt(10, 5)]),
        ),
        sections=[
            catalog_pb2.Section(
                name="Stalls",
                price_tier="premium",
                layout=catalog_pb2.SectionLayout(
                    polygon=catalog_pb2.Polygon(
                        points=[_pt(5, 7), _pt(35, 7), _pt(38, 15), _pt(2, 15)]
                    )
                ),
                rows=[
                    catalog_pb2.Row(
                        label="A",
                        seat_count=4,
                        layout=catalog_pb2.RowLayout(start=_pt(8, 9), end=_pt(32, 9), curve=-1.5),
                    ),
                    catalog_pb2.Row(
                        label="B",
                        seat_count=5,
                        layout=catalog_pb2.RowLayout(start=_pt(6, 12), end=_pt(34, 12)),
                    ),
                ],
            ),
            catalog_pb2.Section(
                name="Floor",
                price_tier="standard",
                standing_capacity=6,
                layout=catalog_pb2.SectionLayout(
                    block=catalog_pb2.RotatedBlock(
                        center=_pt(20, 22), width=20, depth=8, rotation_degrees=5
                    )
                ),
            ),
        ],
    )


def test_a_drawn_venue_with_a_standing_section_comes_back_on_the_event_page(
    stack, catalog, operator
):
    venue = catalog.CreateVenue(
        catalog_pb2.CreateVenueRequest(venue=_venue(_drawn_seat_map())), metadata=operator
    )
    assert venue.capacity == 4 + 5 + 6
    assert venue.seat_map == _drawn_seat_map()
    event = make_event(catalog, operator, venue.id, days_ahead=420)

    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    assert page.venue.seat_map == _drawn_seat_map()
    floor = [t for t in page.tickets if t.section == "Floor"]
    assert len(floor) == 6
    # Standing places have no row and no seat number, each is its own ticket.
    assert {(t.row, t.seat) for t in floor} == {("", "")}
    assert len({t.id for t in floor}) == 6
    assert {t.price.amount_minor for t in floor} == {6000}
    assert sorted(t.seat for t in page.tickets if t.section == "Stalls" and t.row == "A") == [
        "1",
        "2",
        "3",
        "4",
    ]

    # REST clients get the same drawing (lowerCamel JSON).
    status, _, body = rest(stack, f"/event/{event.id}")
    assert status == 200
    seat_map = body["venue"]["seatMap"]
    assert seat_map["layout"]["width"] == 40
    assert seat_map["sections"][1]["standingCapacity"] == 6
    assert seat_map["sections"][1]["layout"]["block"]["rotationDegrees"] == 5
    assert seat_map["sections"][0]["rows"][0]["layout"]["curve"] == -1.5
    assert json_format.ParseDict(body, catalog_pb2.Event()).venue.seat_map == _drawn_seat_map()


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda s: s.sections[1].rows.add(label="A", seat_count=3), "rows"),
        (lambda s: s.sections[0].layout.polygon.ClearField("points"), "polygon"),
        (lambda s: setattr(s.layout, "width", float("nan")), "nan"),
        (lambda s: setattr(s.sections[1], "standing_capacity", -1), "negative"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_bad_drawing_or_standing_section_is_invalid_argument(
    stack, catalog, operator, change, what
):
    seat_map = _drawn_seat_map()
    change(seat_map)
    with pytest.raises(grpc.RpcError) as err:
        catalog.CreateVenue(
            catalog_pb2.CreateVenueRequest(venue=_venue(seat_map)), metadata=operator
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
    assert error_reason(err.value) == "INVALID_ARGUMENT"
    status, _, body = rest(
        stack,
        "/venues",
        method="POST",
        body=json_format.MessageToDict(_venue(seat_map)),
        token=stack.token("ops-layout", role="operator"),
    )
    assert status == 400 and body["details"][0]["metadata"]["field"].startswith("seat_map")


def test_the_demo_venues_come_with_drawings(stack, catalog):
    page = catalog.GetEvent(
        catalog_pb2.GetEventRequest(event_id=str(DEMO_EVENT_ID), view=catalog_pb2.EVENT_VIEW_BASIC)
    )
    layout = page.venue.seat_map.layout
    assert layout.width > 0 and layout.height > 0 and len(layout.stage.points) >= 3
    for section in page.venue.seat_map.sections:
        assert section.HasField("layout"), section.name
        assert all(row.HasField("layout") for row in section.rows), section.name


# --- best available on a standing section ---------------------------------------------------


def _best(booking, stack, user: str, event_id: str, quantity: int, **extra):
    request = booking_pb2.ReserveBestAvailableRequest(event_id=event_id, quantity=quantity, **extra)
    token = stack.token(user)
    return booking.ReserveBestAvailable(request, metadata=(("authorization", f"Bearer {token}"),))


@pytest.fixture(scope="module")
def booking(channel):
    return booking_pb2_grpc.BookingServiceStub(channel)


def _standing_event(catalog, operator, days_ahead: int, places: int) -> str:
    seat_map = catalog_pb2.SeatMap(
        sections=[
            catalog_pb2.Section(name="Floor", price_tier="standard", standing_capacity=places),
            catalog_pb2.Section(
                name="Balcony",
                price_tier="premium",
                rows=[catalog_pb2.Row(label="A", seat_count=4)],
            ),
        ]
    )
    venue = catalog.CreateVenue(
        catalog_pb2.CreateVenueRequest(venue=_venue(seat_map)), metadata=operator
    )
    return make_event(catalog, operator, venue.id, days_ahead=days_ahead).id


def test_best_available_on_a_standing_section_takes_any_free_places(
    stack, catalog, booking, operator, db
):
    event_id = _standing_event(catalog, operator, days_ahead=430, places=10)
    # Someone takes places 2 and 5 by id: the free places are no longer one run.
    ids = dict(
        db.execute(
            "SELECT seat_label, id::text FROM tickets WHERE event_id = %s AND section = 'Floor'",
            (event_id,),
        ).fetchall()
    )
    for place, user in (("2", "standing-a"), ("5", "standing-b")):
        token = stack.token(user)
        booking_stub = booking
        booking_stub.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=ids[place]),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    # Best available for 6 on the floor: no adjacency there, any 6 free places.
    got = _best(booking, stack, "standing-c", event_id, 6, section="Floor")
    assert len(got.ticket_ids) == 6
    rows = db.execute(
        "SELECT section, row_label FROM tickets WHERE id = ANY(%s::uuid[])",
        (list(got.ticket_ids),),
    ).fetchall()
    assert set(rows) == {("Floor", "")}
    assert not {ids["2"], ids["5"]} & set(got.ticket_ids)
    # Two places are left on the floor: a party of 3 is refused, naming what remains.
    with pytest.raises(grpc.RpcError) as err:
        _best(booking, stack, "standing-d", event_id, 3, section="Floor")
    assert error_reason(err.value) == "NO_ADJACENT_SEATS"
    # Without a section the floor (first in the venue's order) gives what it has, then the
    # balcony's row.
    pair = _best(booking, stack, "standing-d", event_id, 2)
    assert {
        r[0]
        for r in db.execute(
            "SELECT section FROM tickets WHERE id = ANY(%s::uuid[])", (list(pair.ticket_ids),)
        ).fetchall()
    } == {"Floor"}
    four = _best(booking, stack, "standing-e", event_id, 4)
    assert {
        r[0]
        for r in db.execute(
            "SELECT section FROM tickets WHERE id = ANY(%s::uuid[])", (list(four.ticket_ids),)
        ).fetchall()
    } == {"Balcony"}


def test_concurrent_buyers_on_a_standing_floor_never_share_a_place(
    stack, catalog, booking, operator, db
):
    event_id = _standing_event(catalog, operator, days_ahead=436, places=60)

    def buy(n: int) -> list[str]:
        # TICKET_UNAVAILABLE means "every candidate was being taken right now": ask again.
        for _ in range(5):
            try:
                reply = _best(booking, stack, f"floor-{n}", event_id, 2, section="Floor")
                return list(reply.ticket_ids)
            except grpc.RpcError as err:
                reason = error_reason(err)
                assert reason in ("NO_ADJACENT_SEATS", "TICKET_UNAVAILABLE"), reason
                if reason == "NO_ADJACENT_SEATS":
                    return []
        return []

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        parties = list(pool.map(buy, range(40)))
    held = [t for party in parties for t in party]
    print(f"standing floor: {sum(1 for p in parties if p)} parties of 2 on 60 places")
    assert len(held) == len(set(held))
    assert sum(1 for p in parties if p) == 30
    (still_free,) = db.execute(
        "SELECT count(*) FROM tickets WHERE event_id = %s AND section = 'Floor'"
        " AND ticket_is_available(status, hold_expire_time)",
        (event_id,),
    ).fetchone()
    assert still_free == 0
