"""The gateway decides who the caller is: booking and the queue need a valid token, a token that
is present must be valid everywhere, and services learn the caller only from the gateway."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.stack import gateway, keys
from deploy.stack.state import StackConfig, StateDir

pytestmark = pytest.mark.integration

LIST_BOOKINGS = "/ticketing.booking.v1.BookingService/ListBookings"


def _call(stack, method: str, token: str | None = None, **headers: str) -> grpc.StatusCode:
    """A unary call with an empty request through the gateway; returns its status code."""
    metadata = [(name.replace("_", "-"), value) for name, value in headers.items()]
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    with grpc.insecure_channel(stack.gateway) as channel:
        rpc = channel.unary_unary(method)
        try:
            rpc(b"", metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _rest(stack, method: str, path: str, token: str | None = None, body: bytes = b"{}"):
    request = urllib.request.Request(
        f"http://{stack.gateway}{path}",
        data=body if method != "GET" else None,
        method=method,
        headers={"content-type": "application/json"}
        | ({"authorization": f"Bearer {token}"} if token else {}),
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _access_log(stack, request_id: str) -> dict:
    """Envoy's JSON access-log line for one request id (it is flushed asynchronously)."""
    log = Path(stack.state_dir) / "logs" / "envoy.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if request_id in line and line.startswith("{"):
                return json.loads(line)
        time.sleep(0.2)
    raise AssertionError(f"no access-log line for {request_id} in {log}")


def _foreign_key_token(stack, user: str) -> str:
    """Right claims and the real kid, but signed by a key the gateway does not know."""
    real = keys.ensure_keys(StateDir(Path(stack.state_dir)))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        keys.claims_for(user), stranger, algorithm="RS256", headers={"kid": keys.key_id(real)}
    )


# -- booking needs a valid token -------------------------------------------------------------


def test_booking_without_a_token_is_unauthenticated(stack):
    assert _call(stack, LIST_BOOKINGS) == grpc.StatusCode.UNAUTHENTICATED


def test_booking_over_rest_without_a_token_is_401_json(stack):
    status, headers, body = _rest(stack, "POST", "/booking/reserve", body=b'{"ticketId": "x"}')
    assert status == 401
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["code"] == 401


UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, 401)
# A genuine token for another audience is authenticated but not allowed here: Envoy says 403.
FORBIDDEN = (grpc.StatusCode.PERMISSION_DENIED, 403)


@pytest.mark.parametrize(
    ("make_token", "refusal"),
    [
        pytest.param(
            lambda stack: _foreign_key_token(stack, "alice"), UNAUTHENTICATED, id="bad-signature"
        ),
        pytest.param(
            lambda stack: stack.token(
                "alice", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
            ),
            UNAUTHENTICATED,
            id="expired",
        ),
        pytest.param(
            lambda stack: stack.token("alice", aud="someone-else"), FORBIDDEN, id="wrong-audience"
        ),
        pytest.param(
            lambda stack: stack.token("alice", iss="not-ticketing"),
            UNAUTHENTICATED,
            id="wrong-issuer",
        ),
        pytest.param(lambda stack: "not.a.jwt", UNAUTHENTICATED, id="garbage"),
    ],
)
def test_booking_with_an_invalid_token_is_refused(stack, make_token, refusal):
    token = make_token(stack)
    assert _call(stack, LIST_BOOKINGS, token) == refusal[0]
    status, _, body = _rest(stack, "POST", "/booking/reserve", token, b'{"ticketId": "x"}')
    assert status == refusal[1]
    assert json.loads(body)["code"] == refusal[1]


def test_booking_with_a_valid_token_reaches_the_service_as_that_user(stack):
    request_id = str(uuid.uuid4())
    token = stack.token("alice", role="operator")

    code = _call(stack, LIST_BOOKINGS, token, x_request_id=request_id, x_ticketing_user="mallory")

    # Until booking is implemented it answers UNIMPLEMENTED; never the gateway's refusal.
    assert code in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.OK)
    entry = _access_log(stack, request_id)
    assert entry["upstream"] == "booking"
    assert (entry["user"], entry["role"]) == ("alice", "operator")


def test_queue_needs_a_token_too(stack):
    assert (
        _call(stack, "/ticketing.queue.v1.QueueService/GetQueuePosition")
        == grpc.StatusCode.UNAUTHENTICATED
    )


# -- elsewhere a token is optional, but checked when present ---------------------------------


def test_public_call_without_a_token_passes_and_spoofed_identity_is_dropped(stack):
    request_id = str(uuid.uuid4())
    with grpc.insecure_channel(stack.gateway) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ticketing.catalog.v1.CatalogService"),
            metadata=[
                ("x-request-id", request_id),
                ("x-ticketing-user", "mallory"),
                ("x-ticketing-role", "operator"),
            ],
            timeout=10,
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    entry = _access_log(stack, request_id)
    assert entry["user"] is None and entry["role"] is None


def test_public_call_with_an_invalid_token_is_refused(stack):
    token = stack.token("alice", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    code = _call(stack, "/grpc.health.v1.Health/Check", token)
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_unknown_routes_get_a_json_404(stack):
    status, headers, body = _rest(stack, "GET", "/no/such/thing")
    assert status == 404
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["code"] == 404


def test_cors_preflight_needs_no_token(stack):
    origin = f"http://{stack.gateway}"
    request = urllib.request.Request(
        f"http://{stack.gateway}/booking/reserve",
        method="OPTIONS",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback http
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == origin


# -- the config itself -----------------------------------------------------------------------


def test_the_running_gateway_config_validates(stack):
    gateway.validate(Path(stack.state_dir) / "envoy" / "envoy.yaml")


def test_the_config_validates_without_the_descriptor_too(tmp_path, monkeypatch):
    monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(tmp_path / "missing.binpb"))
    state = StateDir(tmp_path / "state")
    state.create()
    keys.ensure_keys(state)
    rendered = gateway.write(
        StackConfig(gateway_port=18080, port_base=17100), state, keys.jwks_path(state)
    )

    assert not rendered.transcoder
    done = subprocess.run(
        [str(gateway.envoy_binary()), "--mode", "validate", "-c", str(rendered.path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
