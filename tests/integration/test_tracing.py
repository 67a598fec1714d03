"""Traces as an operator's collector receives them: a stack of its own exports over OTLP/HTTP to
a real receiver inside the test (it decodes every ExportTraceServiceRequest with
opentelemetry-proto). A reserve through the gateway with a client-chosen ``traceparent`` gives
the booking service's server span that trace and that parent, with the Postgres and Redis
calls as its children; a confirm's Stripe call and a search's engine call are traced as well;
a malformed request is traced too and never stops the exporter; the CDC worker traces each
batch it moves from the replication slot into the search index."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.search.v1 import search_pb2, search_pb2_grpc

from tests.conftest import new_state_dir, pick_port_layout, run_ticketing, start_stack
from tests.helpers import make_event, make_venue, service_channel

pytestmark = pytest.mark.integration

BOOKING = "ticketing.booking.v1.BookingService"
SEARCH = "ticketing.search.v1.SearchService"
INTERNAL, SERVER, CLIENT, CONSUMER = 1, 2, 3, 5  # opentelemetry.proto.trace.v1.Span.SpanKind


@dataclass
class Received:
    """One span as the receiver decoded it, with the service.name of its process."""

    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    start_ns: int = 0


@dataclass
class Receiver:
    """A minimal OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies."""

    port: int = 0
    spans: list[Received] = field(default_factory=list)
    requests: int = 0
    bad_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        decoded = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    decoded.append(
                        Received(
                            service=resource.get("service.name", ""),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            start_ns=span.start_time_unix_nano,
                        )
                    )
        with self.lock:
            self.requests += 1
            self.spans.extend(decoded)

    def of_trace(self, trace_id: str) -> list[Received]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, sized or chunked (Envoy's exporter sends it chunked)."""
    if "chunked" not in handler.headers.get("transfer-encoding", "").lower():
        return handler.rfile.read(int(handler.headers.get("content-length", 0)))
    chunks = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = read_body(self)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            try:
                receiver.add(body)
            except Exception:
                with receiver.lock:
                    receiver.bad_requests += 1
                self.send_response(400)
                self.end_headers()
                return
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(found))
    found.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def traced_stack(receiver: Receiver) -> Iterator[Any]:
    """A stack whose processes inherit OTEL_EXPORTER_OTLP_ENDPOINT from `ticketing up`'s
    supervisor (deploy/stack/components.py copies its environment into every service's); the
    gateway's Envoy config traces to the same endpoint (deploy/stack/gateway.py)."""
    state_dir = new_state_dir("ticketing-tracing-")
    tracing_env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # export every 0.2 s instead of 5 s
    }
    saved = {k: os.environ.get(k) for k in tracing_env}
    os.environ.update(tracing_env)
    try:
        running = start_stack(state_dir, pick_port_layout(), demo_data="none")
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield running
    finally:
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


def eventually(read: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    value = read()
    while not value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def new_traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{parent_id}-01", trace_id, parent_id


def descends_from(span: Received, ancestor: Received, spans: list[Received]) -> bool:
    by_id = {s.span_id: s for s in spans}
    current: Received | None = span
    while current is not None:
        if current.parent_id == ancestor.span_id:
            return True
        current = by_id.get(current.parent_id)
    return False


def test_a_reserve_through_the_gateway_continues_the_clients_trace(traced_stack, receiver):
    operator = (("authorization", f"Bearer {traced_stack.token('ops-tracing', role='operator')}"),)
    with grpc.insecure_channel(traced_stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 1, 3)
        event = make_event(catalog, operator, venue.id, days_ahead=900)
        ticket_id = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id)).tickets[0].id
        traceparent, trace_id, client_span = new_traceparent()
        metadata = (
            ("authorization", f"Bearer {traced_stack.token('tracing-buyer')}"),
            ("traceparent", traceparent),
        )
        booking_pb2_grpc.BookingServiceStub(channel).ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=ticket_id), metadata=metadata, timeout=30
        )

    def server_span() -> Received | None:
        return next(
            (
                s
                for s in receiver.of_trace(trace_id)
                if s.kind == SERVER and s.name == f"/{BOOKING}/ReserveTicket"
            ),
            None,
        )

    served = eventually(server_span)
    assert served is not None, f"no server span of the reserve; got {receiver.of_trace(trace_id)}"
    assert served.service == "booking_svc"  # the component name
    # The gateway continued the client's trace with a span of its own (Envoy's OpenTelemetry
    # tracer), and the booking service continued the gateway's.
    # Envoy sends its spans every 5 s.
    edge = eventually(
        lambda: [s for s in receiver.of_trace(trace_id) if s.span_id == served.parent_id]
    )
    assert edge, f"no gateway span above the service's: {receiver.of_trace(trace_id)}"
    assert (edge[0].service, edge[0].parent_id) == ("gateway", client_span)

    def children(system: str) -> list[Received]:
        spans = receiver.of_trace(trace_id)
        return [
            s
            for s in spans
            if s.kind == CLIENT
            and s.attributes.get("db.system", s.attributes.get("db.system.name")) == system
            and descends_from(s, served, spans)
        ]

    postgres = eventually(lambda: children("postgresql"))
    assert postgres, f"no Postgres span under the reserve: {receiver.of_trace(trace_id)}"
    redis = eventually(lambda: children("redis"))
    assert redis, f"no Redis span under the reserve: {receiver.of_trace(trace_id)}"
    print(
        f"trace {trace_id}: {len(receiver.of_trace(trace_id))} spans,"
        f" {len(postgres)} Postgres, {len(redis)} Redis"
    )


def http_children(receiver: Receiver, trace_id: str, server: str, base: str) -> list[Received]:
    """The HTTP client spans (urllib3) to URLs under ``base`` below the server span named so."""
    spans = receiver.of_trace(trace_id)
    served = [s for s in spans if s.kind == SERVER and s.name == server]
    return [
        s
        for s in spans
        if s.kind == CLIENT
        and str(s.attributes.get("http.url", s.attributes.get("url.full", ""))).startswith(base)
        and served
        and descends_from(s, served[0], spans)
    ]


def test_a_confirm_traces_its_stripe_call_and_a_search_its_engine_call(traced_stack, receiver):
    operator = (("authorization", f"Bearer {traced_stack.token('ops-tracing', role='operator')}"),)
    buyer = ("authorization", f"Bearer {traced_stack.token('tracing-payer')}")
    with grpc.insecure_channel(traced_stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 1, 2)
        event = make_event(catalog, operator, venue.id, days_ahead=903)
        ticket_id = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id)).tickets[0].id
        booking = booking_pb2_grpc.BookingServiceStub(channel)
        booking.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=ticket_id), metadata=(buyer,), timeout=30
        )
        traceparent, paid_trace, _ = new_traceparent()
        booking.ConfirmBooking(
            booking_pb2.ConfirmBookingRequest(
                ticket_id=ticket_id,
                payment_details=booking_pb2.PaymentDetails(payment_method_id="pm_card_visa"),
            ),
            metadata=(buyer, ("traceparent", traceparent)),
            timeout=60,
        )
        traceparent, search_trace, _ = new_traceparent()
        search_pb2_grpc.SearchServiceStub(channel).SearchEvents(
            search_pb2.SearchEventsRequest(term="tracing"),
            metadata=(("traceparent", traceparent),),
            timeout=30,
        )
    confirm = f"/{BOOKING}/ConfirmBooking"
    stripe = eventually(
        lambda: http_children(receiver, paid_trace, confirm, traced_stack.stripe_api_base)
    )
    assert stripe, f"no Stripe span under the confirm: {receiver.of_trace(paid_trace)}"
    engine = eventually(
        lambda: http_children(
            receiver, search_trace, f"/{SEARCH}/SearchEvents", traced_stack.search_url
        )
    )
    assert engine, f"no search-engine span under the search: {receiver.of_trace(search_trace)}"
    assert {s.service for s in receiver.of_trace(search_trace) if s.kind == SERVER} == {
        "search_svc"
    }


def test_a_malformed_request_is_traced_and_the_exporter_keeps_going(traced_stack, receiver):
    traceparent, trace_id, client_span = new_traceparent()
    with service_channel(traced_stack, "booking") as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{BOOKING}/GetBooking")(
                b"\x0a\x02\xff\xfe", metadata=(("traceparent", traceparent),), timeout=10
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    spans = eventually(lambda: receiver.of_trace(trace_id))
    assert [(s.name, s.kind, s.parent_id) for s in spans] == [
        (f"/{BOOKING}/GetBooking", SERVER, client_span)
    ]
    assert (
        spans[0].attributes.get("rpc.grpc.status_code") == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    # The line the booking service logged about it carries the trace id.
    log = Path(traced_stack.state_dir) / "logs" / "booking.log"
    logged = eventually(lambda: [line for line in log.read_text().splitlines() if trace_id in line])
    assert logged and '"trace_id": "' + trace_id + '"' in logged[0], logged
    assert "INVALID_ARGUMENT" in logged[0]
    # Still exporting afterwards: a well-formed call's span arrives as well.
    _, later_trace, _ = new_traceparent()
    with service_channel(traced_stack, "booking") as channel:
        with pytest.raises(grpc.RpcError):  # no such booking; what matters is the span
            booking_pb2_grpc.BookingServiceStub(channel).GetBooking(
                booking_pb2.GetBookingRequest(booking_id=str(uuid.uuid4())),
                metadata=(("traceparent", f"00-{later_trace}-{uuid.uuid4().hex[:16]}-01"),),
                timeout=10,
            )
    assert eventually(lambda: receiver.of_trace(later_trace))
    assert receiver.bad_requests == 0


def test_the_cdc_worker_traces_each_batch_from_the_slot_to_the_index(traced_stack, receiver):
    """A catalog write reaches the index through the CDC worker; its batch is a trace of the
    worker's own: the batch span, the time in the slot, the Postgres re-read and the bulk
    write to the engine, with the engine's HTTP call below the write."""
    since = time.time_ns()
    operator = (("authorization", f"Bearer {traced_stack.token('ops-tracing', role='operator')}"),)
    with grpc.insecure_channel(traced_stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 1, 4)
        make_event(catalog, operator, venue.id, days_ahead=905)

    def batches() -> list[tuple[Received, list[Received]]]:
        with receiver.lock:
            spans = [s for s in receiver.spans if s.service == "cdc_worker"]
        found = []
        for batch in (s for s in spans if s.name == "cdc.batch" and s.start_ns >= since):
            below = [s for s in spans if s.trace_id == batch.trace_id and s is not batch]
            names = {s.name for s in below}
            if (
                batch.attributes.get("cdc.events", 0) >= 1
                and {
                    "cdc.read_slot",
                    "cdc.load_documents",
                    "cdc.index_write",
                }
                <= names
            ):
                found.append((batch, below))
        return found

    found = eventually(batches, timeout=30)
    assert found, (
        "no traced CDC batch with its read, load and write spans; the worker sent: "
        f"{sorted({s.name for s in receiver.spans if s.service == 'cdc_worker'})}"
    )
    batch, below = found[-1]
    assert batch.kind == CONSUMER and batch.parent_id == ""  # a trace of its own
    assert batch.attributes["cdc.slot"] == "ticketing_search"
    assert batch.attributes["cdc.transactions"] >= 1
    assert "/" in batch.attributes["cdc.end_lsn"]  # an LSN as Postgres writes it
    for name in ("cdc.read_slot", "cdc.load_documents", "cdc.index_write"):
        span = next(s for s in below if s.name == name)
        assert span.parent_id == batch.span_id, (name, span)
    write = next(s for s in below if s.name == "cdc.index_write")
    assert write.kind == CLIENT and write.attributes["cdc.documents"] >= 1
    assert write.status_code != 2  # not an error
    engine_calls = [
        s
        for s in below
        if s.kind == CLIENT
        and str(s.attributes.get("http.url", s.attributes.get("url.full", ""))).startswith(
            traced_stack.search_url
        )
        and descends_from(s, write, [batch, *below])
    ]
    assert engine_calls, f"no engine HTTP call under the index write: {below}"
    print(
        f"CDC batch trace {batch.trace_id}: {len(below) + 1} spans,"
        f" {batch.attributes['cdc.transactions']} transactions, {len(engine_calls)} engine call(s)"
    )
