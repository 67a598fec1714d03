"""Rate limits per verified user: a burst above the limit is refused (429 for REST,
RESOURCE_EXHAUSTED for gRPC and gRPC-Web) while another user is unaffected, and booking is held
to a stricter limit than reads. (Per client address: test_gateway_resilience.py, on a stack of
its own with low limits, since every client of the shared stack is 127.0.0.1.)"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.stack.gateway import LIMITS
from tests.integration.gateway_client import grpc_web, rest

pytestmark = pytest.mark.integration

BOOKING_BURST = LIMITS[("booking", "user")].burst
READ_BURST = LIMITS[("read", "user")].burst
RESOURCE_EXHAUSTED = 8
# Three times the booking burst, sent at once: well past what refills meanwhile (10 a second;
# the refusal counts below leave room for a burst that takes a slow machine 3 s).
BURST = 3 * BOOKING_BURST


def _user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _grpc_burst(stack, call, request, user: str, count: int) -> dict[str, int]:
    """``count`` calls at once as one user over one channel; the count of each status."""
    metadata = (("authorization", f"Bearer {stack.token(user)}"),)
    futures = [call.future(request, metadata=metadata, timeout=30) for _ in range(count)]
    outcomes: dict[str, int] = {}
    for future in futures:
        try:
            future.result()
            name = "OK"
        except grpc.RpcError as exc:
            name = exc.code().name
        outcomes[name] = outcomes.get(name, 0) + 1
    return outcomes


def test_a_booking_burst_over_grpc_is_refused_for_that_user_only(stack):
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)
        request = booking_pb2.ListBookingsRequest(page_size=1)

        outcomes = _grpc_burst(stack, stub.ListBookings, request, _user("greedy"), BURST)
        other = _grpc_burst(stack, stub.ListBookings, request, _user("patient"), 1)

    assert outcomes.get("RESOURCE_EXHAUSTED", 0) >= BOOKING_BURST // 2, outcomes
    assert outcomes.get("OK", 0) >= BOOKING_BURST, outcomes
    assert set(outcomes) == {"OK", "RESOURCE_EXHAUSTED"}, outcomes
    assert other == {"OK": 1}


def test_reads_have_room_for_the_same_burst(stack):
    """Stricter on booking than on reads: the burst that booking refuses passes for reads."""
    assert BURST < READ_BURST
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        outcomes = _grpc_burst(
            stack,
            stub.ListEvents,
            catalog_pb2.ListEventsRequest(page_size=1),
            _user("reader"),
            BURST,
        )
    assert outcomes == {"OK": BURST}


def _http_burst(call, count: int) -> list:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda _: call(), range(count)))


def test_a_booking_burst_over_rest_gets_429_json_for_that_user_only(stack):
    greedy, patient = stack.token(_user("greedy")), stack.token(_user("patient"))

    replies = _http_burst(lambda: rest(stack.gateway, "GET", "/bookings", token=greedy), BURST)

    statuses = [reply.status for reply in replies]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(429) >= BOOKING_BURST // 2
    refused = next(reply for reply in replies if reply.status == 429)
    assert refused.headers["content-type"].startswith("application/json")
    assert (refused.body["code"], refused.reason) == (RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert refused.headers["x-ratelimit-limit"] == str(BOOKING_BURST)
    assert rest(stack.gateway, "GET", "/bookings", token=patient).status == 200


def test_a_booking_burst_over_grpc_web_gets_resource_exhausted(stack):
    greedy, patient = stack.token(_user("greedy")), stack.token(_user("patient"))
    method = "/ticketing.booking.v1.BookingService/ListBookings"

    replies = _http_burst(lambda: grpc_web(stack.gateway, method, token=greedy), BURST)

    assert {reply.http_status for reply in replies} == {200}
    codes = [reply.grpc_status for reply in replies]
    assert set(codes) == {0, RESOURCE_EXHAUSTED}, codes
    assert codes.count(RESOURCE_EXHAUSTED) >= BOOKING_BURST // 2
    assert grpc_web(stack.gateway, method, token=patient).grpc_status == 0
