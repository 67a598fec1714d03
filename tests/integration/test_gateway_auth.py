"""The gateway decides who the caller is: booking, the queue and operator methods need a valid
token over native gRPC, gRPC-Web and REST alike; a token that is present must be valid
everywhere; services learn the caller only from the gateway; the gateway's own refusals reach
each kind of client in its own terms (gRPC statuses, or JSON shaped like the services' errors)."""

from __future__ import annotations

import json
import subprocess
import threading
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
from ticketing.catalog.v1 import catalog_pb2

from deploy.stack import certs, gateway, keys, webclient
from deploy.stack.state import StackConfig, StateDir
from tests.integration.gateway_client import access_log, grpc_status, grpc_web, rest

pytestmark = pytest.mark.integration

LIST_BOOKINGS = "/ticketing.booking.v1.BookingService/ListBookings"
DEMO_EVENT = "03a67087-67cc-5c61-b94c-c5f5e083f9f7"
UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED = 16, 7, 12


def _foreign_key_token(stack, user: str) -> str:
    """Right claims and the real kid, but signed by a key the gateway does not know."""
    real = keys.ensure_keys(StateDir(Path(stack.state_dir)))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(
        keys.claims_for(user), stranger, algorithm="RS256", headers={"kid": keys.key_id(real)}
    )


# -- booking needs a valid token, over every protocol ------------------------------------------


def test_booking_without_a_token_is_refused_over_every_protocol(stack):
    code, _ = grpc_status(stack.gateway, LIST_BOOKINGS)
    assert code == grpc.StatusCode.UNAUTHENTICATED

    web = grpc_web(stack.gateway, LIST_BOOKINGS)
    # gRPC-Web clients read the status from grpc-status; an HTTP error would hide it.
    assert (web.http_status, web.grpc_status) == (200, UNAUTHENTICATED)

    for method, path in (("POST", "/booking/reserve"), ("GET", "/bookings")):
        reply = rest(
            stack.gateway, method, path, body={"ticketId": "x"} if method == "POST" else None
        )
        assert reply.status == 401, path
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.body["code"] == UNAUTHENTICATED  # google.rpc.Status, like service errors
        assert reply.reason == "UNAUTHENTICATED"
        assert reply.body["details"][0]["domain"] == gateway.GATEWAY_ERROR_DOMAIN
        assert reply.body["details"][0]["metadata"]["request_id"] == reply.headers["x-request-id"]


REFUSED = (grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED, 401)
# A genuine token for another audience is authenticated but not allowed here: Envoy says 403.
FORBIDDEN = (grpc.StatusCode.PERMISSION_DENIED, PERMISSION_DENIED, 403)


@pytest.mark.parametrize(
    ("make_token", "refusal"),
    [
        pytest.param(lambda stack: _foreign_key_token(stack, "alice"), REFUSED, id="bad-signature"),
        pytest.param(
            lambda stack: stack.token(
                "alice", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600
            ),
            REFUSED,
            id="expired",
        ),
        pytest.param(
            lambda stack: stack.token("alice", aud="someone-else"), FORBIDDEN, id="wrong-audience"
        ),
        pytest.param(
            lambda stack: stack.token("alice", iss="not-ticketing"), REFUSED, id="wrong-issuer"
        ),
        pytest.param(lambda stack: "not.a.jwt", REFUSED, id="garbage"),
    ],
)
def test_booking_with_an_invalid_token_is_refused_over_every_protocol(stack, make_token, refusal):
    token = make_token(stack)
    grpc_code, web_code, http_code = refusal

    assert grpc_status(stack.gateway, LIST_BOOKINGS, token=token)[0] == grpc_code
    web = grpc_web(stack.gateway, LIST_BOOKINGS, token=token)
    assert (web.http_status, web.grpc_status) == (200, web_code)
    for method, path in (("POST", "/booking/reserve"), ("GET", "/bookings")):
        body = {"ticketId": "x"} if method == "POST" else None
        reply = rest(stack.gateway, method, path, body=body, token=token)
        assert reply.status == http_code, path
        assert reply.body["code"] == web_code


def test_a_valid_token_reaches_the_service_as_that_user_and_forged_identity_is_ignored(stack):
    token = stack.token("alice", role="user")
    forged = {"x-ticketing-user": "mallory", "x-ticketing-role": "operator"}

    grpc_id, web_id, rest_id = (str(uuid.uuid4()) for _ in range(3))
    code, _ = grpc_status(
        stack.gateway,
        LIST_BOOKINGS,
        token=token,
        metadata=[("x-request-id", grpc_id), *forged.items()],
    )
    web = grpc_web(
        stack.gateway, LIST_BOOKINGS, token=token, headers={"x-request-id": web_id} | forged
    )
    reply = rest(
        stack.gateway, "GET", "/bookings", token=token, headers={"x-request-id": rest_id} | forged
    )

    assert code == grpc.StatusCode.OK
    assert (web.http_status, web.grpc_status) == (200, 0)
    assert reply.status == 200 and "bookings" in reply.body
    for request_id in (grpc_id, web_id, rest_id):
        entry = access_log(stack.state_dir, request_id)
        assert entry["upstream"] == "booking"
        assert (entry["user"], entry["role"]) == ("alice", "user"), entry
        assert entry["client"] == "127.0.0.1"


def test_queue_needs_a_token_too(stack):
    code, _ = grpc_status(stack.gateway, "/ticketing.queue.v1.QueueService/GetQueuePosition")
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert rest(stack.gateway, "GET", f"/queue/{DEMO_EVENT}/position").status == 401


def test_operator_methods_need_a_token_at_the_gateway(stack):
    venue = catalog_pb2.CreateVenueRequest(venue=catalog_pb2.Venue(name="Nope")).SerializeToString()
    code, details = grpc_status(
        stack.gateway, "/ticketing.catalog.v1.CatalogService/CreateVenue", venue
    )
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    reply = rest(stack.gateway, "POST", "/venues", body={"name": "Nope"})
    assert (reply.status, reply.reason) == (401, "UNAUTHENTICATED")
    # A signed-in non-operator passes the gateway; the catalog then says no.
    user = stack.token("not-an-operator")
    code, _ = grpc_status(
        stack.gateway, "/ticketing.catalog.v1.CatalogService/CreateVenue", venue, token=user
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_the_stripe_webhook_needs_no_token_but_its_own_signature(stack):
    reply = rest(
        stack.gateway,
        "POST",
        "/webhooks/stripe",
        body={"type": "payment_intent.succeeded"},
        headers={"stripe-signature": "t=1,v1=forged"},
    )
    # The booking service answered (not the gateway's 401): it checked the signature.
    assert reply.status == 400
    assert reply.reason == "WEBHOOK_SIGNATURE_INVALID"


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
    entry = access_log(stack.state_dir, request_id)
    assert entry["user"] is None and entry["role"] is None


def test_public_call_with_an_invalid_token_is_refused(stack):
    token = stack.token("alice", iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    code, _ = grpc_status(stack.gateway, "/grpc.health.v1.Health/Check", token=token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert rest(stack.gateway, "GET", "/events", token=token).status == 401


def test_rest_reads_reach_the_services(stack):
    """Every GET route is transcoded (the event page's HTTP cache must not swallow the others)."""
    events = rest(stack.gateway, "GET", "/events?pageSize=2")
    assert events.status == 200 and len(events.body["events"]) == 2
    tickets = rest(stack.gateway, "GET", f"/event/{DEMO_EVENT}/tickets?pageSize=3")
    assert tickets.status == 200 and len(tickets.body["tickets"]) == 3
    # 501 while the search service is unfinished; never the gateway's 404.
    assert rest(stack.gateway, "GET", "/search/suggest?prefix=em").status in (200, 501)


def test_unknown_routes_get_not_found_in_each_protocols_terms(stack):
    reply = rest(stack.gateway, "GET", "/no/such/thing")
    assert reply.status == 404
    assert reply.headers["content-type"].startswith("application/json")
    assert (reply.body["code"], reply.reason) == (5, "NO_ROUTE")
    code, _ = grpc_status(stack.gateway, "/no.such.v1.Service/Method")
    assert code == grpc.StatusCode.UNIMPLEMENTED
    web = grpc_web(stack.gateway, "/no.such.v1.Service/Method")
    assert (web.http_status, web.grpc_status) == (200, UNIMPLEMENTED)


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


# -- the development sign-in of the web client ----------------------------------------------


def test_the_dev_sign_in_gives_a_user_token_the_gateway_accepts(stack):
    reply = rest(stack.gateway, "POST", "/dev/token", body={"user": "web-dora"})
    assert reply.status == 200
    claims = jwt.decode(reply.body["token"], options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == ("web-dora", "user")  # never an operator
    listed = grpc_web(stack.gateway, LIST_BOOKINGS, token=reply.body["token"])
    assert listed.grpc_status == 0
    assert rest(stack.gateway, "POST", "/dev/token", body={"user": "a b"}).status == 400


def test_the_dev_sign_in_is_off_with_a_production_issuer(tmp_path):
    state = StateDir(tmp_path)
    state.create()
    gateway.save_settings(
        state,
        gateway.GatewaySettings().with_jwt(
            jwks_url="https://id.example.com/.well-known/jwks.json",
            issuer="https://id.example.com/",
        ),
    )
    server = webclient.WebClient(0, state, tmp_path / "dist")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_address[1]}/dev/token",
            data=json.dumps({"user": "eve"}).encode(),
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 - loopback http
        assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


# -- the config itself -----------------------------------------------------------------------


def test_the_running_gateway_config_validates_and_keeps_admin_on_loopback(stack):
    path = Path(stack.state_dir) / "envoy" / "envoy.yaml"
    gateway.validate(path)
    text = path.read_text()
    assert json.loads(text)["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert "0.0.0.0" not in text


def _validate(rendered: Path) -> None:
    done = subprocess.run(
        [str(gateway.envoy_binary()), "--mode", "validate", "-c", str(rendered)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _jwt_provider(config):
    """The jwt_authn provider of the gateway listener in a rendered config."""
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (jwt_authn,) = [f for f in manager["http_filters"] if f["name"].endswith("jwt_authn")]
    return jwt_authn["typed_config"]["providers"]["ticketing"]


def test_the_config_validates_without_the_descriptor_too(tmp_path, monkeypatch):
    monkeypatch.setenv(gateway.DESCRIPTOR_ENV, str(tmp_path / "missing.binpb"))
    state = StateDir(tmp_path / "state")
    state.create()
    keys.ensure_keys(state)
    certs.ensure_certs(state)  # the gateway's client certificate, as `ticketing up` makes it
    rendered = gateway.write(
        StackConfig(gateway_port=18080, port_base=17100), state, keys.jwks_path(state)
    )
    assert not rendered.transcoder
    _validate(rendered.path)


def test_a_production_issuer_is_configuration(tmp_path):
    """A JWKS URL, an issuer and an audience replace the development key; no dev sign-in."""
    state = StateDir(tmp_path / "state")
    state.create()
    gateway.save_settings(
        state,
        gateway.GatewaySettings().with_jwt(
            jwks_url="https://id.example.com/.well-known/jwks.json",
            issuer="https://id.example.com/",
            audiences=("tickets-api",),
        ),
    )
    certs.ensure_certs(state)
    rendered = gateway.write(
        StackConfig(gateway_port=18080, port_base=17100), state, keys.jwks_path(state)
    )
    _validate(rendered.path)
    text = rendered.path.read_text()
    provider = _jwt_provider(json.loads(text))
    assert provider["issuer"] == "https://id.example.com/"
    assert provider["audiences"] == ["tickets-api"]
    assert provider["remote_jwks"]["http_uri"]["uri"] == (
        "https://id.example.com/.well-known/jwks.json"
    )
    assert "local_jwks" not in text and "/dev/token" not in text
    # Back to the development key.
    gateway.save_settings(state, gateway.GatewaySettings())
    text = gateway.render(StackConfig(), state, keys.jwks_path(state))
    assert "local_jwks" in text and "/dev/token" in text
