"""Lighter event pages through the gateway: the BASIC view, a read mask (AIP-157) and the
AVAILABILITY view (every ticket's status as runs per section, the snapshot WatchAvailability
starts with) over REST and gRPC; a read mask naming a field the event lacks is 400 /
INVALID_ARGUMENT naming read_mask. Prints each form's size (run with -s to see it)."""

import time
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2

from tests.helpers import error_reason, make_event, make_venue, rest

pytestmark = pytest.mark.integration

AVAILABLE = catalog_pb2.TICKET_STATUS_AVAILABLE
HELD = catalog_pb2.TICKET_STATUS_HELD


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-page-views', role='operator')}"),)


@pytest.fixture(scope="module")
def held_event(stack, catalog, channel, operator):
    """An event of 2 sections x 3 rows x 5 seats with seat S01/2/4 held by someone."""
    venue = make_venue(catalog, operator, sections=2, rows=3, seats=5)
    event = make_event(catalog, operator, venue.id, days_ahead=1700)
    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    target = next(t for t in page.tickets if (t.section, t.row, t.seat) == ("S01", "2", "4"))
    booking_pb2_grpc.BookingServiceStub(channel).ReserveTicket(
        booking_pb2.ReserveTicketRequest(ticket_id=target.id, request_id=str(uuid.uuid4())),
        metadata=(("authorization", f"Bearer {stack.token('page-views-bob')}"),),
    )
    return event.id


def _get(stack, path: str) -> tuple[dict, int]:
    status, headers, body = rest(stack, path)
    assert status == 200, body
    return body, int({k.lower(): v for k, v in headers.items()}["content-length"])


def _fresh(stack, path: str, ready) -> tuple[dict, int]:
    """The REST page once it shows the hold (the gateway's copy may be up to ~1 s old)."""
    deadline = time.monotonic() + 15
    while True:
        body, size = _get(stack, path)
        if ready(body) or time.monotonic() > deadline:
            return body, size
        time.sleep(0.2)


def test_basic_view_mask_and_availability_over_rest(stack, held_event):
    def held(body) -> bool:
        return body["ticketSummary"]["held"] == 1

    full, full_size = _fresh(stack, f"/event/{held_event}", held)
    basic, basic_size = _fresh(stack, f"/event/{held_event}?view=EVENT_VIEW_BASIC", held)
    seats, seats_size = _fresh(stack, f"/event/{held_event}?view=EVENT_VIEW_AVAILABILITY", held)
    masked, masked_size = _fresh(
        stack,
        f"/event/{held_event}?readMask=name,ticketSummary.held",
        held,
    )
    print(
        f"\nGET /event/{held_event} (30 tickets): FULL {full_size:,} bytes, BASIC "
        f"{basic_size:,}, AVAILABILITY {seats_size:,}, readMask=name,ticketSummary.held "
        f"{masked_size:,}"
    )
    assert len(full["tickets"]) == 30
    # BASIC: everything but the tickets.
    assert basic["tickets"] == [] and basic["ticketSummary"] == full["ticketSummary"]
    assert basic["venue"] == full["venue"] and basic["name"] == full["name"]
    assert "availability" not in full and "availability" not in basic
    # AVAILABILITY: BASIC plus every ticket's status as runs, in seat order.
    assert seats["tickets"] == [] and seats["ticketSummary"] == full["ticketSummary"]
    runs = {s["section"]: s["runs"] for s in seats["availability"]["sections"]}
    assert runs["S00"] == [{"status": "TICKET_STATUS_AVAILABLE", "count": 15}]
    assert runs["S01"] == [
        {"status": "TICKET_STATUS_AVAILABLE", "count": 8},
        {"status": "TICKET_STATUS_HELD", "count": 1},
        {"status": "TICKET_STATUS_AVAILABLE", "count": 6},
    ]
    # A read mask: the fields it names, every other one at its default.
    assert masked["name"] == full["name"] and masked["ticketSummary"]["held"] == 1
    assert masked["id"] == "" and masked["tickets"] == []
    assert masked["ticketSummary"]["total"] == 0 and "venue" not in masked
    assert basic_size < full_size and seats_size < full_size and masked_size < basic_size


def test_the_availability_view_is_watch_availabilitys_snapshot(stack, catalog, held_event):
    call = catalog.WatchAvailability(
        catalog_pb2.WatchAvailabilityRequest(event_id=held_event), timeout=60
    )
    try:
        first = next(call)
    finally:
        call.cancel()
    page = catalog.GetEvent(
        catalog_pb2.GetEventRequest(event_id=held_event, view=catalog_pb2.EVENT_VIEW_AVAILABILITY)
    )
    assert not page.tickets and page.ticket_summary.total == 30
    assert page.availability == first.snapshot
    _, _, body = rest(stack, f"/event/{held_event}?view=EVENT_VIEW_AVAILABILITY")
    over_rest = json_format.ParseDict(body, catalog_pb2.Event())
    assert over_rest.availability == first.snapshot


def test_a_read_mask_over_grpc(catalog, held_event):
    page = catalog.GetEvent(
        catalog_pb2.GetEventRequest(
            event_id=held_event,
            read_mask=field_mask_pb2.FieldMask(paths=["id", "tickets", "venue.seat_map"]),
        )
    )
    assert page.id == held_event and len(page.tickets) == 30
    assert not page.name and not page.venue.name and len(page.venue.seat_map.sections) == 2
    assert not page.HasField("ticket_summary")


@pytest.mark.parametrize("query", ["readMask=name,nope", "readMask=venue.nope"])
def test_a_read_mask_naming_a_field_the_event_lacks_is_400(stack, held_event, query):
    status, _, body = rest(stack, f"/event/{held_event}?{query}")
    assert status == 400, body
    assert body["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    (info,) = body["details"]
    assert info["reason"] == "INVALID_ARGUMENT"
    assert info["metadata"]["field"] == "read_mask"
    assert "nope" in info["metadata"]["paths"] and "nope" in body["message"]


def test_a_bad_read_mask_over_grpc_is_invalid_argument(catalog, held_event):
    with pytest.raises(grpc.RpcError) as refused:
        catalog.GetEvent(
            catalog_pb2.GetEventRequest(
                event_id=held_event, read_mask=field_mask_pb2.FieldMask(paths=["tickets.nope"])
            )
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(refused.value) == "INVALID_ARGUMENT"
    assert "tickets.nope" in refused.value.details()
