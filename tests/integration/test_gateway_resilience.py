"""On a stack of its own (so the shared one is never disturbed): the per-address rate limit keys
on the real client address, not on a forgeable X-Forwarded-For, and a stopped service's routes
answer 503 / UNAVAILABLE at once over every protocol, then recover when it is back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from deploy.stack import gateway
from deploy.stack.gateway import Limit
from deploy.stack.state import StateDir
from tests.conftest import new_state_dir, pick_port_layout, run_ticketing, start_stack
from tests.integration.gateway_client import access_log, grpc_status, grpc_web, rest

pytestmark = pytest.mark.integration

# One buyer address may book this fast here (the shared stack's limits are far higher).
ADDRESS_LIMIT = Limit(rate=1, burst=3)
LIST_BOOKINGS = "/ticketing.booking.v1.BookingService/ListBookings"
LIST_EVENTS = "/ticketing.catalog.v1.CatalogService/ListEvents"
RESOURCE_EXHAUSTED, UNAVAILABLE = 8, 14
# "At once": far below the route timeouts (15 s and more) a hanging call would take.
AT_ONCE = 2.0


@pytest.fixture(scope="module")
def own_stack() -> Iterator[Any]:
    state_dir = new_state_dir("ticketing-gateway-")
    settings = gateway.GatewaySettings()
    limits = settings.limits | {("booking", "address"): ADDRESS_LIMIT}
    gateway.save_settings(StateDir(state_dir), replace(settings, limits=limits))
    try:
        running = start_stack(state_dir, pick_port_layout(), demo_data="none")
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    try:
        yield running
    finally:
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


# -- per client address ----------------------------------------------------------------------


def test_a_burst_from_one_address_is_refused_and_forged_forwarding_headers_do_not_help(own_stack):
    gw = own_stack.gateway
    refused: dict[str, int] = {"rest": 0, "grpc-web": 0}
    first_refused = None
    for i in range(20):
        # A new user every call (their own buckets are full) and a new made-up address in
        # X-Forwarded-For: only the bucket of the real address, 127.0.0.2, can say no.
        token = own_stack.token(f"crowd-{i}-{uuid.uuid4().hex[:6]}")
        headers = {"x-forwarded-for": f"203.0.113.{i + 1}", "x-request-id": str(uuid.uuid4())}
        if i % 2 == 0:
            reply = rest(gw, "GET", "/bookings", token=token, headers=headers, source="127.0.0.2")
            if reply.status == 429:
                assert reply.reason == "RATE_LIMITED"
                refused["rest"] += 1
                first_refused = first_refused or headers["x-request-id"]
        else:
            web = grpc_web(gw, LIST_BOOKINGS, token=token, headers=headers, source="127.0.0.2")
            assert web.http_status == 200
            refused["grpc-web"] += web.grpc_status == RESOURCE_EXHAUSTED

    # 20 calls in a few seconds against 3 + 1 a second: most are refused, over both protocols.
    assert refused["rest"] >= 4 and refused["grpc-web"] >= 4, refused
    entry = access_log(own_stack.state_dir, first_refused)
    assert (entry["client"], entry["status"]) == ("127.0.0.2", 429)
    # Another client address is unaffected.
    other = rest(gw, "GET", "/bookings", token=own_stack.token("elsewhere"), source="127.0.0.3")
    assert other.status == 200


# -- a service goes down, and comes back -----------------------------------------------------


def _snapshot(stack) -> dict[str, Any]:
    return json.loads((Path(stack.state_dir) / "run" / "stack.json").read_text())


def _exited(pid: int) -> bool:
    """Gone, or a zombie (its parent, the held supervisor, cannot reap it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.25)


def _all_three(gw: str) -> tuple[int, grpc.StatusCode, Any]:
    return (
        rest(gw, "GET", "/events?pageSize=1").status,
        grpc_status(gw, LIST_EVENTS)[0],
        grpc_web(gw, LIST_EVENTS).grpc_status,
    )


def test_a_stopped_service_fails_fast_over_every_protocol_and_recovers(own_stack):
    gw = own_stack.gateway
    assert _all_three(gw) == (200, grpc.StatusCode.OK, 0)
    snapshot = _snapshot(own_stack)
    supervisor = snapshot["supervisor_pid"]
    catalog = next(c["pid"] for c in snapshot["components"] if c["name"] == "catalog")
    user = own_stack.token("bystander")

    # Hold the supervisor so it does not restart the catalog before we have looked.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.killpg(os.getpgid(catalog), signal.SIGTERM)
        _wait_for(lambda: _exited(catalog), 30, "the catalog exiting")

        reply, took = _timed(lambda: rest(gw, "GET", "/events?pageSize=1"))
        assert (reply.status, reply.body["code"], reply.reason) == (503, 14, "SERVICE_UNAVAILABLE")
        assert took < AT_ONCE
        (code, _), took = _timed(lambda: grpc_status(gw, LIST_EVENTS))
        assert code == grpc.StatusCode.UNAVAILABLE and took < AT_ONCE
        web, took = _timed(lambda: grpc_web(gw, LIST_EVENTS))
        assert (web.http_status, web.grpc_status) == (200, UNAVAILABLE) and took < AT_ONCE
        # The cached REST event page is served by the catalog too: JSON, not Envoy's text.
        page = rest(gw, "GET", f"/event/{uuid.uuid4()}")
        assert (page.status, page.reason) == (503, "SERVICE_UNAVAILABLE")

        # The health check notices: the gateway stops even trying the catalog.
        _wait_for(
            lambda: (
                rest(gw, "GET", "/events").body["details"][0]["metadata"]["cause"]
                == "no_healthy_upstream"
            ),
            15,
            "the health check marking the catalog down",
        )
        # The other services are unaffected.
        assert grpc_status(gw, LIST_BOOKINGS, token=user)[0] == grpc.StatusCode.OK
    finally:
        os.kill(supervisor, signal.SIGCONT)

    # The supervisor restarts the catalog; the gateway sends it traffic again.
    _wait_for(lambda: _all_three(gw) == (200, grpc.StatusCode.OK, 0), 90, "recovery")
