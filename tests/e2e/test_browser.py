"""The web client end to end, as a person uses it: headless Chromium (Debian's, driven by
playwright-core through tests/e2e/browser.mjs) on the page the shared stack serves at the
gateway's /, talking gRPC-Web through the gateway to the real services.

Each user journey is its own test; the ones that need the search or the queue service say so
in their name's docstring. The purchase journey leaves a screenshot of the confirmation in its
tmp_path (booking-confirmed.png) for a person to look at.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path

import grpc
import pytest
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from tests.e2e.driver import HOT_SALE, ON_SALE, PNG, journey
from tests.helpers import make_event, make_venue, ts

pytestmark = pytest.mark.integration


def test_an_event_page_shows_the_event_and_its_seat_list(browser, tmp_path):
    """Catalog only."""
    seen = journey(browser, "event_and_seats", tmp_path, eventId=ON_SALE)
    assert seen["name"] == "Ember & Ash: Live at the Royal Albert Hall"
    assert seen["sections"] >= 2 and seen["seats"] > 0
    assert "tickets available" in seen["availability"]


def test_a_buyer_signs_in_reserves_a_seat_and_pays_with_a_test_card(browser, tmp_path):
    """Catalog and booking. Leaves booking-confirmed.png in tmp_path."""
    user = f"e2e-buyer-{uuid.uuid4().hex[:6]}"
    seen = journey(browser, "reserve_and_confirm", tmp_path, eventId=ON_SALE, user=user)

    assert seen["heading"] == "Booking confirmed"
    assert seen["selection"].startswith("1 seat")
    assert seen["countdown"].startswith(("9:", "10:"))  # a ten-minute hold
    screenshot = Path(seen["screenshot"])
    assert screenshot.read_bytes().startswith(PNG) and screenshot.stat().st_size > 10_000
    print(f"\nscreenshot of the confirmed booking: {screenshot}")
    # What the page showed is what the booking service recorded, for this user.
    with grpc.insecure_channel(browser.gateway) as channel:
        found = booking_pb2_grpc.BookingServiceStub(channel).GetBooking(
            booking_pb2.GetBookingRequest(booking_id=seen["bookingId"]),
            metadata=(("authorization", f"Bearer {browser.token(user)}"),),
            timeout=30,
        )
    assert found.status == booking_pb2.BOOKING_STATUS_CONFIRMED
    assert list(found.ticket_ids) == [seen["ticketId"]]


def test_search_with_filters_finds_an_event_and_opens_it(browser, tmp_path):
    """Needs the search service (issue 4) and its index (the CDC worker)."""
    name = "Ember & Ash: Live at the Royal Albert Hall"
    seen = journey(
        browser, "search_with_filters", tmp_path, term="ember", type="concert", open=name
    )
    assert "found" in seen["summary"]
    assert any(result.startswith(name) for result in seen["results"])
    assert seen["opened"] == name and seen["url"].endswith(f"#/event/{ON_SALE}")


def test_joining_a_hot_sale_before_it_opens_waits_in_the_waiting_room(browser, tmp_path):
    """Needs the queue service (issue 6)."""
    user = f"e2e-early-{uuid.uuid4().hex[:6]}"
    seen = journey(browser, "pre_queue", tmp_path, eventId=HOT_SALE, user=user)
    assert seen["status"] == "You are in the waiting room."


def test_a_buyer_watches_their_place_in_the_queue_move_then_buys(browser, tmp_path):
    """Needs the queue service (issue 6): an open hot sale admitting one buyer every 3 s, with
    eight buyers ahead (about 24 s of queue, so a browser slow to start on a loaded machine still
    joins behind some of them); the page shows the place going down live, then lets the buyer in."""
    operator = (("authorization", f"Bearer {browser.token('e2e-ops', role='operator')}"),)
    with grpc.insecure_channel(browser.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 2, 10)
        event_id = make_event(
            catalog,
            operator,
            venue.id,
            days_ahead=40,
            on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
            queue_policy=catalog_pb2.QueuePolicy(
                enabled=True,
                admission_rate_per_minute=20,
                max_active_users=100,
                admission_ttl_seconds=600,
            ),
        ).id
        queue = queue_pb2_grpc.QueueServiceStub(channel)
        for i in range(8):
            ahead = (("authorization", f"Bearer {browser.token(f'e2e-ahead-{i}')}"),)
            queue.JoinQueue(queue_pb2.JoinQueueRequest(event_id=event_id), metadata=ahead)

    user = f"e2e-queued-{uuid.uuid4().hex[:6]}"
    seen = journey(
        browser, "queue_then_buy", tmp_path, eventId=event_id, user=user, admitWithinMs=120_000
    )

    positions = seen["positions"]
    assert len(positions) >= 2 and positions == sorted(positions, reverse=True), positions
    assert "your turn" in seen["admitted"]
    assert seen["heading"] == "Booking confirmed"


def _sale(gateway: str, ticket_ids: list[str], token, stop: threading.Event) -> dict:
    """A scripted sale: one buyer after another reserves one seat, four a second, until
    ``stop`` (or the seats run out); counts what the booking service answered."""
    counts = {"taken": 0, "refused": 0}
    with grpc.insecure_channel(gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)
        for i, ticket_id in enumerate(ticket_ids):
            if stop.wait(0.25):
                break
            try:
                stub.ReserveTicket(
                    booking_pb2.ReserveTicketRequest(ticket_id=ticket_id),
                    metadata=(("authorization", f"Bearer {token(f'e2e-sale-{i}')}"),),
                    timeout=30,
                )
                counts["taken"] += 1
            except grpc.RpcError:
                counts["refused"] += 1
    return counts


def test_an_operator_watches_a_sale_move_on_the_live_dashboard_and_pauses_the_queue(
    browser, tmp_path
):
    """Needs the booking and queue services and the stack's Prometheus (issue 11). While
    buyers reserve in the background, the operator's dashboard (an operator token, pasted)
    shows the holds figure, the holds chart and the event's held tickets going up, refreshed
    in place; on a queue-enabled event, its controls pause admission and set the rate, which
    the queue service then reports. Leaves operator-dashboard.png in tmp_path."""
    operator_token = browser.token("e2e-operator", role="operator")
    operator = (("authorization", f"Bearer {operator_token}"),)
    with grpc.insecure_channel(browser.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 2, 10, 20)
        sale = make_event(catalog, operator, venue.id, days_ahead=60)
        tickets = [
            t.id for t in catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=sale.id)).tickets
        ]
        queued = make_event(
            catalog,
            operator,
            venue.id,
            days_ahead=61,
            on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
            queue_policy=catalog_pb2.QueuePolicy(
                enabled=True,
                admission_rate_per_minute=30,
                max_active_users=100,
                admission_ttl_seconds=600,
            ),
        )

    stop = threading.Event()
    counted: dict = {}
    seller = threading.Thread(
        target=lambda: counted.update(_sale(browser.gateway, tickets, browser.token, stop)),
        daemon=True,
    )
    seller.start()
    try:
        seen = journey(
            browser,
            "operator_dashboard",
            tmp_path,
            token=operator_token,
            eventId=sale.id,
            queueEventId=queued.id,
            rate=45,
            moveWithinMs=90_000,
        )
    finally:
        stop.set()
        seller.join(timeout=60)
    first, moved = seen["first"], seen["moved"]
    print(
        f"\ndashboard: holds taken {first['holdsTaken']:.0f} -> {moved['holdsTaken']:.0f}, "
        f"holds chart {first['holds']['points']} -> {moved['holds']['points']} points "
        f"(latest {moved['holds']['values']}), tickets {first['tickets']['values']} -> "
        f"{moved['tickets']['values']}, {moved['refreshes'] - first['refreshes']} refreshes in "
        f"{(moved['at'] - first['at']) / 1000:.1f} s; the sale: {counted}; "
        f"screenshot {seen['screenshot']}"
    )
    assert counted["taken"] > 0
    assert moved["holdsTaken"] > first["holdsTaken"]
    # The figures are this event's own series (booking labels holds by event id).
    assert moved["figuresScope"] == "event"
    assert moved["holds"]["points"] >= first["holds"]["points"] + 2
    assert moved["holds"]["values"]["taken"] > 0
    assert moved["tickets"]["values"]["held"] > first["tickets"]["values"].get("held", 0)
    assert moved["tickets"]["values"]["available"] < first["tickets"]["values"]["available"]
    # Refreshed in place, by itself: the same document (no reload), several refreshes.
    assert seen["sameDocument"]
    assert moved["refreshes"] - first["refreshes"] >= 2
    # Every chart is a real uPlot canvas, and nothing on the page reported an error.
    assert all(chart["canvases"] >= 1 for chart in moved["charts"].values()), moved["charts"]
    assert moved["error"] == ""

    assert seen["paused"].startswith("Paused")
    assert seen["rateShown"] == "45"
    with grpc.insecure_channel(browser.gateway) as channel:
        stats = queue_pb2_grpc.QueueServiceStub(channel).GetQueueStats(
            queue_pb2.GetQueueStatsRequest(event_id=queued.id), metadata=operator, timeout=30
        )
    assert stats.paused and stats.admission_rate_per_minute == 45


def test_a_plain_user_gets_403_on_the_dashboard_and_the_page_says_so(browser, tmp_path):
    """The gateway refuses a user token's Prometheus queries (403); the page tells them it
    is for operators only."""
    seen = journey(
        browser,
        "dashboard_refused",
        tmp_path,
        expected_errors=("403",),
        user=f"e2e-nosy-{uuid.uuid4().hex[:6]}",
        eventId=ON_SALE,
    )
    assert seen["status"] == 403
    assert "Operators only" in seen["message"]
