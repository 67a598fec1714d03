"""Metrics as an operator watching a sale sees them: every process serves Prometheus metrics on
loopback under the names dashboards know, the stack's Prometheus server scrapes them, a reserve
through the gateway shows there within seconds, a malformed request is counted under its code,
and the sale's alert rules pass their own unit tests."""

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.stack import prometheus
from tests.helpers import make_event, make_venue, service_channel

pytestmark = pytest.mark.integration

BOOKING = "ticketing.booking.v1.BookingService"


def scrape(stack, component: str) -> str:
    url = f"http://127.0.0.1:{stack.ports[component + '-metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` with these labels in a /metrics page (0 when absent):
    the series left unnamed (an event's id, say) are added up."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def eventually(read, timeout: float = 5.0):
    """``read()`` once it is truthy (or its last value after ``timeout``): a call is counted as
    its handler ends, just after the client has its answer."""
    deadline = time.monotonic() + timeout
    value = read()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def query(stack, promql: str) -> float:
    """An instant query against the stack's Prometheus; the sum of the result (0 if empty)."""
    url = f"http://127.0.0.1:{stack.ports['prometheus']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return sum(float(r["value"][1]) for r in body["data"]["result"])


def new_event(stack, days_ahead: int, **fields) -> tuple[str, list[str]]:
    """A fresh event on sale: its id and its ticket ids."""
    operator = (("authorization", f"Bearer {stack.token('ops-metrics', role='operator')}"),)
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, 1, 1, 5)
        event = make_event(catalog, operator, venue.id, days_ahead=days_ahead, **fields)
        page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return event.id, [t.id for t in page.tickets]


@pytest.fixture(scope="module")
def ticket(stack):
    """A fresh event on sale's ticket ids."""
    return new_event(stack, 950)[1]


def reserve(stack, ticket_id: str, user: str) -> None:
    metadata = (("authorization", f"Bearer {stack.token(user)}"),)
    with grpc.insecure_channel(stack.gateway) as channel:
        booking_pb2_grpc.BookingServiceStub(channel).ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=ticket_id), metadata=metadata, timeout=30
        )


def test_every_process_serves_its_metrics_on_loopback_and_not_through_the_gateway(stack):
    for component in prometheus.TARGETS:
        text = scrape(stack, component)
        assert "# TYPE grpc_server_handled_total counter" in text, component
    assert "grpc_server_handled_total" in scrape(stack, "booking")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{stack.gateway}/metrics", timeout=10)
    assert err.value.code == 404


def test_a_reserve_is_counted_by_method_code_and_outcome(stack, ticket):
    before = scrape(stack, "booking")
    reserve(stack, ticket[0], "metrics-buyer")
    with pytest.raises(grpc.RpcError):  # the same seat again, by someone else
        reserve(stack, ticket[0], "metrics-rival")
    counted = {"grpc_service": BOOKING, "grpc_method": "ReserveTicket"}
    eventually(
        lambda: (
            sample(scrape(stack, "booking"), "grpc_server_handling_seconds_count", **counted)
            - sample(before, "grpc_server_handling_seconds_count", **counted)
            >= 2
        )
    )
    after = scrape(stack, "booking")

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    rpc = {"grpc_service": BOOKING, "grpc_method": "ReserveTicket"}
    assert delta("grpc_server_started_total", **rpc) == 2
    assert delta("grpc_server_handled_total", grpc_code="OK", **rpc) == 1
    assert delta("grpc_server_handled_total", grpc_code="FAILED_PRECONDITION", **rpc) == 1
    assert delta("grpc_server_handling_seconds_count", **rpc) == 2
    assert delta("ticketing_holds_total", outcome="TAKEN") == 1
    assert delta("ticketing_holds_total", outcome="TICKET_UNAVAILABLE") == 1
    assert delta("ticketing_tickets_held_total") == 1


def test_a_reserve_on_one_event_moves_that_events_series_and_not_anothers(stack):
    """The operator's page per event: a hold taken and one refused on event A show under A's
    event_id (the refusal too, once Postgres has named the event), and B's series stay put."""
    event_a, seats_a = new_event(stack, 955, max_tickets_per_user=2)
    event_b, _ = new_event(stack, 960)
    before = scrape(stack, "booking")
    reserve(stack, seats_a[0], "metrics-a-buyer")
    reserve(stack, seats_a[1], "metrics-a-buyer")
    # Past the event's per-user cap: refused by Postgres, which knows the event.
    with pytest.raises(grpc.RpcError) as err:
        reserve(stack, seats_a[2], "metrics-a-buyer")
    refused = err.value.code().name
    rpc = {"grpc_service": BOOKING, "grpc_method": "ReserveTicket"}
    eventually(
        lambda: (
            sample(scrape(stack, "booking"), "grpc_server_handling_seconds_count", **rpc)
            - sample(before, "grpc_server_handling_seconds_count", **rpc)
            >= 3
        )
    )
    after = scrape(stack, "booking")

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    a_refused = delta("ticketing_holds_total", event_id=event_a) - delta(
        "ticketing_holds_total", event_id=event_a, outcome="TAKEN"
    )
    print(f"event A: taken +2, refused +{a_refused:.0f} ({refused}); event B unchanged")
    assert delta("ticketing_holds_total", event_id=event_a, outcome="TAKEN") == 2
    assert a_refused == 1
    assert delta("ticketing_tickets_held_total", event_id=event_a) == 2
    assert delta("ticketing_holds_total", event_id=event_b) == 0
    assert delta("ticketing_tickets_held_total", event_id=event_b) == 0
    assert f'event_id="{event_b}"' not in after  # B never had a hold: no series at all


def test_a_malformed_request_is_counted_under_invalid_argument(stack):
    rpc = {"grpc_service": BOOKING, "grpc_method": "GetBooking", "grpc_code": "INVALID_ARGUMENT"}
    before = sample(scrape(stack, "booking"), "grpc_server_handled_total", **rpc)
    with service_channel(stack, "booking") as channel:
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary(f"/{BOOKING}/GetBooking")(b"\x0a\x02\xff\xfe", timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The status leaves before the handler's last line (where it is counted) has run.
    assert (
        eventually(lambda: sample(scrape(stack, "booking"), "grpc_server_handled_total", **rpc))
        == before + 1
    )


def test_a_reserve_through_the_gateway_shows_in_prometheus_within_seconds(stack, ticket):
    handled = (
        f'sum(grpc_server_handled_total{{grpc_service="{BOOKING}",grpc_method="ReserveTicket"}})'
    )
    taken = 'sum(ticketing_holds_total{outcome="TAKEN"})'
    deadline = time.monotonic() + 60
    while query(stack, 'count(up{job="ticketing"} == 1)') < len(prometheus.TARGETS):
        assert time.monotonic() < deadline, "Prometheus never saw every process up"
        time.sleep(0.5)
    before = (query(stack, handled), query(stack, taken))
    reserve(stack, ticket[1], "metrics-watched")
    started = time.monotonic()
    while True:
        now = (query(stack, handled), query(stack, taken))
        if all(a > b for a, b in zip(now, before, strict=True)):
            break
        assert time.monotonic() - started < 15, f"the reserve did not show within 15 s: {now}"
        time.sleep(0.25)
    print(f"the reserve showed in Prometheus after {time.monotonic() - started:.1f} s")
    # Envoy's own metrics are scraped as well, with per-method gRPC counts at the edge.
    assert query(stack, "sum(envoy_http_downstream_rq_total)") > 0
    edge = "sum(envoy_cluster_grpc_v1_BookingService_ReserveTicket_total)"
    deadline = time.monotonic() + 15
    while query(stack, edge) < 1:
        assert time.monotonic() < deadline, "Envoy's gRPC stats never showed the reserve"
        time.sleep(0.25)


def test_the_alert_rules_are_valid_and_pass_their_unit_tests():
    tool = prometheus.promtool()
    assert tool is not None, "promtool is missing: `make test` installs Debian's prometheus"
    checked = subprocess.run(
        [str(tool), "check", "rules", str(prometheus.RULES)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 6 rules found" in checked.stdout
    tested = subprocess.run(
        [str(tool), "test", "rules", "alerts_test.yml"],
        capture_output=True,
        text=True,
        cwd=prometheus.RULES.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    print(tested.stdout.strip())


def test_every_panel_of_the_sale_dashboard_is_a_query_prometheus_answers(stack, ticket):
    dashboard = json.loads(
        (prometheus.RULES.parents[1] / "grafana" / "sale-dashboard.json").read_text()
    )
    reserve(stack, ticket[3], "metrics-dashboard")

    def empty_panels() -> list[str]:
        empty = []
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                # The dashboard's event picker, set to all events (Grafana's allValue).
                expr = target["expr"].replace("$event_id", ".*")
                url = f"http://127.0.0.1:{stack.ports['prometheus']}/api/v1/query?" + (
                    urllib.parse.urlencode({"query": expr})
                )
                with urllib.request.urlopen(url, timeout=10) as resp:
                    body = json.loads(resp.read())
                assert body["status"] == "success", (panel["title"], body)
                if not body["data"]["result"]:
                    empty.append(panel["title"])
        return empty

    # What every sale shows at once: the components, the gateway, booking calls, holds.
    wanted = {"Components up", "Gateway answers by class", "Booking calls by method and code"}
    deadline = time.monotonic() + 30
    while wanted & set(empty := empty_panels()):
        assert time.monotonic() < deadline, f"still without data: {wanted & set(empty)}"
        time.sleep(1)
    print(f"{len(dashboard['panels'])} panels, all valid; without data on this stack: {empty}")
