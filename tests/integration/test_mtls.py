"""Who may call a service: mutual TLS on every service port of the shared stack.

A process that reaches a service port past the gateway with forged ``x-ticketing-user`` /
``x-ticketing-role`` headers is refused outright without a client certificate of the stack's
CA (plaintext or TLS alike), and is served as nobody with one that is not the gateway's (an
operator's, another service's): the headers are believed from the gateway's certificate alone.
The gateway's own calls, its health checks, ``ticketing status`` and grpcurl keep working.
The ports come from the stack's own status (``ticketing status --json``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from deploy.cli import grpcurl_direct
from deploy.stack import certs
from deploy.stack.state import StateDir
from tests.conftest import run_ticketing
from tests.helpers import error_reason, make_event, make_venue, service_credentials
from ticketing_common import mesh

pytestmark = pytest.mark.integration

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
FORGED = (("x-ticketing-user", "mallory"), ("x-ticketing-role", "operator"))
COMPONENTS = {service.component for service in mesh.SERVICES} | set(mesh.WORKERS)
QUEUE_STATS = "/ticketing.queue.v1.QueueService/GetQueueStats"


@pytest.fixture(scope="module")
def service_ports(stack) -> dict[str, int]:
    done = run_ticketing(stack.state_dir, "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(done.stdout)["components"]
    found = {row["name"]: row["port"] for row in rows if row["component"] in COMPONENTS}
    assert set(found) >= COMPONENTS, found
    return found


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-mtls', role='operator')}"),)


@pytest.fixture(scope="module")
def event_id(stack, operator) -> str:
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, operator, sections=1, rows=1, seats=4)
        policy = catalog_pb2.QueuePolicy(
            enabled=True, admission_rate_per_minute=60, max_active_users=100
        )
        return make_event(catalog, operator, venue.id, days_ahead=40, queue_policy=policy).id


def _forged_stats(channel: grpc.Channel, event_id: str) -> grpc.RpcError | None:
    """GetQueueStats as a forged operator; the error (None when it answered)."""
    try:
        queue_pb2_grpc.QueueServiceStub(channel).GetQueueStats(
            queue_pb2.GetQueueStatsRequest(event_id=event_id), metadata=FORGED, timeout=10
        )
    except grpc.RpcError as err:
        return err
    return None


def _call(channel: grpc.Channel) -> grpc.RpcError | None:
    """Any call, with forged headers: the health check (every port serves it)."""
    try:
        health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), metadata=FORGED, timeout=10
        )
    except grpc.RpcError as err:
        return err
    return None


def test_no_client_certificate_no_call_on_any_service_port(stack, service_ports, event_id):
    ca = certs.files_of(StateDir(Path(stack.state_dir)), certs.OPERATOR).ca.read_bytes()
    refused = {}
    for name, port in sorted(service_ports.items()):
        address = f"127.0.0.1:{port}"
        with grpc.insecure_channel(address) as channel:
            plain = _call(channel)
            stats = _forged_stats(channel, event_id)
        with grpc.secure_channel(address, grpc.ssl_channel_credentials(ca)) as channel:
            anonymous = _call(channel)
        for what, err in (("plaintext", plain), ("plaintext stats", stats), ("tls", anonymous)):
            assert err is not None, f"{name}: a {what} call without a client certificate answered"
            assert err.code() == grpc.StatusCode.UNAVAILABLE, (name, what, err)
        refused[name] = port
    print(f"refused without a client certificate (plaintext and TLS): {refused}")


def test_a_certificate_of_another_ca_naming_the_gateway_is_refused(stack, service_ports):
    """Forging the gateway's identity needs the stack's CA key, not just its name."""
    with tempfile.TemporaryDirectory() as other:
        foreign = StateDir(Path(other))
        certs.ensure_certs(foreign)
        impostor = certs.files_of(foreign, certs.GATEWAY)
        real_ca = certs.files_of(StateDir(Path(stack.state_dir)), certs.GATEWAY).ca
        credentials = grpc.ssl_channel_credentials(
            root_certificates=real_ca.read_bytes(),
            private_key=impostor.key.read_bytes(),
            certificate_chain=impostor.cert.read_bytes(),
        )
        for name, port in sorted(service_ports.items()):
            with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
                err = _call(channel)
            assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE, (name, err)


@pytest.mark.parametrize("holder", [certs.OPERATOR, "booking"])
def test_forged_identity_headers_from_a_peer_that_is_not_the_gateway_are_not_believed(
    stack, service_ports, event_id, holder
):
    credentials = service_credentials(stack, holder)
    queue = f"127.0.0.1:{service_ports['queue']}"
    with grpc.secure_channel(queue, credentials) as channel:
        # The certificate is good: the call gets in.
        assert _call(channel) is None
        err = _forged_stats(channel, event_id)
    assert err is not None, f"{holder}'s certificate with forged operator headers saw the stats"
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
    assert error_reason(err) == "AUTHENTICATION_REQUIRED"
    booking = f"127.0.0.1:{service_ports['booking']}"
    with grpc.secure_channel(booking, credentials) as channel:
        with pytest.raises(grpc.RpcError) as listed:
            booking_pb2_grpc.BookingServiceStub(channel).ListBookings(
                booking_pb2.ListBookingsRequest(), metadata=FORGED, timeout=10
            )
    assert listed.value.code() == grpc.StatusCode.UNAUTHENTICATED
    print(f"{holder}: forged operator headers -> {err.code().name} on the queue and booking")


def test_the_gateways_calls_and_health_checks_still_work(stack, service_ports, event_id, operator):
    with grpc.insecure_channel(stack.gateway) as channel:
        stats = queue_pb2_grpc.QueueServiceStub(channel).GetQueueStats(
            queue_pb2.GetQueueStatsRequest(event_id=event_id), metadata=operator, timeout=10
        )
        assert stats.event_id == event_id
        health = health_pb2_grpc.HealthStub(channel)
        for service in mesh.PUBLIC_SERVICES:
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        # A forged header through the gateway is stripped: nobody, not an operator.
        with pytest.raises(grpc.RpcError) as err:
            queue_pb2_grpc.QueueServiceStub(channel).GetQueueStats(
                queue_pb2.GetQueueStatsRequest(event_id=event_id), metadata=FORGED, timeout=10
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Envoy's own gRPC health checks of every upstream pass over mutual TLS.
    admin = stack.ports["envoy-admin"]
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/clusters", timeout=10) as resp:
        clusters = resp.read().decode()
    flags = [line for line in clusters.splitlines() if "::health_flags::" in line]
    assert flags and all(line.endswith("::healthy") for line in flags), flags
    # ticketing status probes every service with the stack's own certificate.
    done = run_ticketing(stack.state_dir, "status", "--json")
    rows = [r for r in json.loads(done.stdout)["components"] if r["name"] in service_ports]
    assert rows and all(r["healthy"] for r in rows), rows


def test_grpcurl_through_the_gateway_and_directly_with_the_operator_certificate(
    stack, service_ports
):
    through = subprocess.run(
        [GRPCURL, "-plaintext", stack.gateway, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert through.returncode == 0, through.stderr
    assert set(mesh.PUBLIC_SERVICES) <= set(through.stdout.split())
    # The command `ticketing up` prints for operators.
    command = grpcurl_direct(
        StateDir(Path(stack.state_dir)), f"127.0.0.1:{service_ports['catalog']}"
    ).split()
    command[0] = GRPCURL
    direct = subprocess.run(
        [*command, "grpc.health.v1.Health/Check"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert direct.returncode == 0, direct.stderr
    assert '"status": "SERVING"' in direct.stdout
    plain = subprocess.run(
        [
            GRPCURL,
            "-plaintext",
            "-connect-timeout",
            "3",
            f"127.0.0.1:{service_ports['catalog']}",
            "list",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert plain.returncode != 0, plain.stdout


def test_a_service_given_no_certificates_refuses_to_start(tmp_path):
    """Mutual TLS is the default: without the TLS variables (and no explicit plaintext) a
    service exits 2 naming them."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TICKETING_REDIS_URL": "redis://127.0.0.1:1/0",
        "TICKETING_ADMISSION_KEY": "k",
        "TICKETING_PEERS": "ticketing.catalog.v1.CatalogService=127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "queue_svc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "TICKETING_TLS_CERT" in done.stderr and "TICKETING_PLAINTEXT" in done.stderr
    missing = env | {
        "TICKETING_TLS_CERT": str(tmp_path / "nope.crt"),
        "TICKETING_TLS_KEY": str(tmp_path / "nope.key"),
        "TICKETING_TLS_CA": str(tmp_path / "ca.crt"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "queue_svc"],
        env=missing,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "nope.crt" in done.stderr, done.stderr
