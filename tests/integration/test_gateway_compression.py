"""Response compression at the gateway: the event page and gRPC-Web replies leave Envoy gzip- or
brotli-compressed when the client accepts it, identity when it does not; native gRPC is left to
gRPC's own compression. Prints the page's weight in each coding (run with -s to see it)."""

import http.client
import json

import grpc
import pytest
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from tests.helpers import make_event, make_venue
from tests.integration.gateway_client import GRPC_WEB, grpc_web, rest

pytestmark = pytest.mark.integration

GET_EVENT = "/ticketing.catalog.v1.CatalogService/GetEvent"


def get_without_accept_encoding(gateway: str, path: str) -> tuple[dict[str, str], bytes]:
    """A GET with no Accept-Encoding header at all (http.client otherwise sends "identity")."""
    host, port = gateway.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body[:300]
        return {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


@pytest.fixture(scope="module")
def biggest_event(stack, catalog) -> str:
    """An event of this module's own with 5,000 generated tickets (the shared stack's demo events
    are small, and another module's events would make the figures depend on the order)."""
    operator = (("authorization", f"Bearer {stack.token('ops-compression', role='operator')}"),)
    venue = make_venue(catalog, operator, sections=10, rows=25, seats=20)
    assert venue.capacity == 5_000
    return make_event(catalog, operator, venue.id, days_ahead=430).id


def same_page(stack, event_id: str, accept_encoding: str):
    """The identity page and the page in ``accept_encoding``, equal once decoded. A live page
    may change between two reads (and Envoy drops the strong ETag of a page it compresses, so
    versions cannot be matched), hence a few tries."""
    path = f"/event/{event_id}"
    for _ in range(5):
        identity = rest(stack.gateway, "GET", path)
        encoded = rest(stack.gateway, "GET", path, headers={"accept-encoding": accept_encoding})
        assert identity.status == encoded.status == 200
        if identity.body == encoded.body:
            return identity, encoded
    raise AssertionError(f"the {accept_encoding} page of {event_id} never matched the identity one")


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_the_event_page_is_compressed_when_accepted(stack, biggest_event, coding):
    identity, encoded = same_page(stack, biggest_event, coding)
    assert encoded.headers["content-encoding"] == coding
    assert "accept-encoding" in encoded.headers["vary"].lower()
    assert len(encoded.body["tickets"]) == int(encoded.body["ticketSummary"]["total"]) > 0
    assert encoded.wire_bytes * 5 < identity.wire_bytes


def test_without_accept_encoding_the_page_is_identity(stack, biggest_event):
    path = f"/event/{biggest_event}"
    for _ in range(5):
        # Just after a compressed reply, so the cache holds the page: it must hold identity.
        assert rest(stack.gateway, "GET", path, headers={"accept-encoding": "gzip"}).body
        headers, body = get_without_accept_encoding(stack.gateway, path)
        explicit = rest(stack.gateway, "GET", path, headers={"accept-encoding": "identity"})
        if json.loads(body) == explicit.body:
            break
    else:
        raise AssertionError("the page without Accept-Encoding never matched the identity one")
    assert "content-encoding" not in headers
    assert "content-encoding" not in explicit.headers
    assert int(headers["content-length"]) == len(body) == explicit.wire_bytes
    # Compressible, so caches in front of the gateway must keep the variants apart.
    assert "accept-encoding" in headers["vary"].lower()


@pytest.mark.parametrize(
    ("accept_encoding", "chosen"),
    [
        ("gzip, deflate, br", "br"),  # a tie, as browsers send it: brotli is preferred
        ("br;q=0.5, gzip", "gzip"),  # the client's weights decide
        ("deflate", None),  # nothing the gateway speaks
        ("gzip;q=0, br;q=0", None),
    ],
)
def test_the_coding_follows_accept_encoding(stack, biggest_event, accept_encoding, chosen):
    reply = rest(
        stack.gateway,
        "GET",
        f"/event/{biggest_event}",
        headers={"accept-encoding": accept_encoding},
    )
    assert reply.status == 200
    assert reply.headers.get("content-encoding") == chosen
    assert reply.body["tickets"]


def test_small_replies_stay_uncompressed(stack):
    reply = rest(stack.gateway, "GET", "/event/not-a-uuid", headers={"accept-encoding": "gzip, br"})
    assert reply.status == 400 and reply.reason == "MALFORMED_ID"
    assert "content-encoding" not in reply.headers


def test_the_web_clients_script_is_compressed(stack):
    plain = rest(stack.gateway, "GET", "/app/app.js")
    encoded = rest(stack.gateway, "GET", "/app/app.js", headers={"accept-encoding": "br"})
    assert plain.status == encoded.status == 200
    assert encoded.headers["content-type"].startswith("application/javascript")
    assert encoded.headers["content-encoding"] == "br"
    assert encoded.body == plain.body and encoded.wire_bytes < plain.wire_bytes


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_grpc_web_replies_are_compressed_and_still_decode(stack, biggest_event, coding):
    request = catalog_pb2.GetEventRequest(event_id=biggest_event).SerializeToString()
    plain = grpc_web(stack.gateway, GET_EVENT, request)
    encoded = grpc_web(stack.gateway, GET_EVENT, request, headers={"accept-encoding": coding})
    assert plain.grpc_status == encoded.grpc_status == 0, encoded.grpc_message
    assert "content-encoding" not in plain.headers
    assert encoded.headers["content-encoding"] == coding
    assert encoded.headers["content-type"] == GRPC_WEB
    event = catalog_pb2.Event.FromString(encoded.messages[0])
    assert event.id == biggest_event
    assert len(event.tickets) == event.ticket_summary.total > 0
    assert encoded.wire_bytes * 3 < plain.wire_bytes


def test_native_grpc_is_not_compressed_by_the_gateway(stack, biggest_event):
    with grpc.insecure_channel(
        stack.gateway, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        event, call = catalog_pb2_grpc.CatalogServiceStub(channel).GetEvent.with_call(
            catalog_pb2.GetEventRequest(event_id=biggest_event),
            metadata=(("accept-encoding", "gzip, br"),),
            timeout=30,
        )
    assert len(event.tickets) == event.ticket_summary.total > 0
    assert "content-encoding" not in dict(call.initial_metadata())


def test_the_event_page_weight(stack, biggest_event):
    """The figures: the biggest demo event page's bytes on the wire in each coding."""
    path = f"/event/{biggest_event}"
    sizes, tickets = {}, set()
    for coding in ("identity", "gzip", "br"):
        reply = rest(stack.gateway, "GET", path, headers={"accept-encoding": coding})
        assert reply.status == 200
        assert reply.headers.get("content-encoding", "identity") == coding
        sizes[coding] = reply.wire_bytes
        tickets.add(len(reply.body["tickets"]))
    print(
        f"\nGET /event/{biggest_event} ({tickets.pop()} tickets): "
        + ", ".join(
            f"{coding} {size:,} bytes ({size / sizes['identity']:.1%})"
            for coding, size in sizes.items()
        )
    )
    assert sizes["br"] < sizes["identity"] and sizes["gzip"] < sizes["identity"]
