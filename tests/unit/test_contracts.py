"""The v1 contracts: buf lint, the wire-compatibility gate and the seed's REST API."""

import shutil
import subprocess
from pathlib import Path

import pytest
from google.api import annotations_pb2
from ticketing.booking.v1 import booking_pb2
from ticketing.catalog.v1 import catalog_pb2
from ticketing.queue.v1 import queue_pb2
from ticketing.search.v1 import search_pb2

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / "node_modules" / ".bin" / "buf"


def _buf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _http_rule(module, service: str, method: str):
    options = module.DESCRIPTOR.services_by_name[service].methods_by_name[method].GetOptions()
    return options.Extensions[annotations_pb2.http]


def test_buf_lint_passes():
    result = _buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_contracts_are_wire_compatible_with_the_v1_baseline():
    result = _buf("breaking", "protos", "--against", "protos/v1-baseline.binpb")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("string ticket_id = 1;", "int64 ticket_id = 1;"),  # a type change
        ("string request_id = 3;", "string request_id = 30;"),  # a renumbering
    ],
)
def test_breaking_check_catches_a_wire_change(tmp_path: Path, old: str, new: str):
    """Control case: the gate above is able to fail."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT / "protos", work / "protos")
    shutil.copytree(ROOT / "gen" / "third_party", work / "gen" / "third_party")
    shutil.copy(ROOT / "buf.yaml", work / "buf.yaml")
    proto = work / "protos" / "ticketing" / "booking" / "v1" / "booking.proto"
    text = proto.read_text()
    assert old in text
    proto.write_text(text.replace(old, new, 1))
    result = _buf("breaking", "protos", "--against", "protos/v1-baseline.binpb", cwd=work)
    assert result.returncode != 0
    assert "ReserveTicketRequest" in result.stdout + result.stderr


def test_seed_rest_paths_are_annotated_exactly():
    # GET /event/{id} is answered by GetEventPage: GetEvent's request, GetEvent's answer as
    # JSON bytes (google.api.HttpBody), printed once per page version by the catalog.
    get_event = _http_rule(catalog_pb2, "CatalogService", "GetEventPage")
    assert get_event.get == "/event/{event_id}"
    page = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].methods_by_name
    assert page["GetEventPage"].input_type is page["GetEvent"].input_type
    assert page["GetEventPage"].output_type.full_name == "google.api.HttpBody"
    search = _http_rule(search_pb2, "SearchService", "SearchEvents")
    assert search.get == "/search"
    reserve = _http_rule(booking_pb2, "BookingService", "ReserveTicket")
    assert (reserve.post, reserve.body) == ("/booking/reserve", "*")
    confirm = _http_rule(booking_pb2, "BookingService", "ConfirmBooking")
    assert (confirm.put, confirm.body) == ("/booking/confirm", "*")
    join = _http_rule(queue_pb2, "QueueService", "JoinQueue")
    assert join.post == "/queue/{event_id}/join"


def test_seed_json_field_names():
    reserve = booking_pb2.ReserveTicketRequest.DESCRIPTOR.fields_by_name
    assert reserve["ticket_id"].json_name == "ticketId"
    confirm = booking_pb2.ConfirmBookingRequest.DESCRIPTOR.fields_by_name
    assert confirm["payment_details"].json_name == "paymentDetails"
    details = booking_pb2.PaymentDetails.DESCRIPTOR.fields_by_name
    assert details["payment_method_id"].json_name == "paymentMethodId"
    search = search_pb2.SearchEventsRequest.DESCRIPTOR.fields_by_name
    assert {"term", "location", "type", "date", "page_size", "page_token"} <= set(search)


def test_the_error_reasons_are_the_contracts_enum():
    """ErrorInfo.reason values come from ticketing.common.v1.ErrorReason (without its prefix),
    generated into Python: what the services send is what the contract documents."""
    from ticketing.common.v1 import common_pb2

    from ticketing_common.errors import Reason

    declared = [
        v.name.removeprefix("ERROR_REASON_")
        for v in common_pb2.ErrorReason.DESCRIPTOR.values
        if v.number != 0
    ]
    assert [r.value for r in Reason] == declared
    assert Reason("TICKET_UNAVAILABLE") is Reason.TICKET_UNAVAILABLE
    assert len(set(declared)) == len(declared) > 25
