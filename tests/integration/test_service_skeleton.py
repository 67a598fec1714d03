"""The shared bootstrap as a client sees it: health, reflection with docs, error mapping,
configuration errors and graceful shutdown, on real gRPC servers."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from ticketing_common.errors import NotFound, Reason
from ticketing_common.server import ServiceBinding, build_server
from ticketing_common.settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def _error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(exc)
    assert status is not None, "no grpc-status-details-bin trailer"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


@pytest.fixture
async def skeleton():
    """A server with a servicer that implements nothing yet, as every skeleton starts."""
    servicer = queue_pb2_grpc.QueueServiceServicer()
    server = build_server(
        BaseSettings(plaintext=True),
        [
            ServiceBinding(
                "ticketing.queue.v1.QueueService",
                lambda s: queue_pb2_grpc.add_QueueServiceServicer_to_server(servicer, s),
            )
        ],
    )
    await server.start()
    yield server
    await server.stop(0)


async def test_health_reports_serving_for_the_process_and_its_service(skeleton):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{skeleton.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "ticketing.queue.v1.QueueService"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_unimplemented_method_answers_unimplemented_with_reason(skeleton):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{skeleton.port}") as channel:
        stub = queue_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetQueueStats(queue_pb2.GetQueueStatsRequest(event_id="e"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert _error_info(err.value).reason == "NOT_IMPLEMENTED"


async def test_reflection_lists_the_mesh_and_describes_with_comments(skeleton):
    target = f"127.0.0.1:{skeleton.port}"
    listed = await asyncio.to_thread(
        subprocess.run, [GRPCURL, "-plaintext", target, "list"], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    for name in ("Catalog", "Search", "Booking", "Queue"):
        assert f"ticketing.{name.lower()}.v1.{name}Service" in listed.stdout.split()
    described = await asyncio.to_thread(
        subprocess.run,
        [GRPCURL, "-plaintext", target, "describe", "ticketing.booking.v1.PaymentDetails"],
        capture_output=True,
        text=True,
    )
    assert described.returncode == 0, described.stderr
    assert "A Stripe PaymentMethod id" in described.stdout


async def test_health_answers_for_a_peer_and_reports_a_dead_peer_not_serving(skeleton):
    settings = BaseSettings(
        plaintext=True,
        peers={
            "ticketing.queue.v1.QueueService": f"127.0.0.1:{skeleton.port}",
            "ticketing.booking.v1.BookingService": "127.0.0.1:1",
        },
    )
    front = build_server(settings, [])
    await front.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{front.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            alive = await stub.Check(
                health_pb2.HealthCheckRequest(service="ticketing.queue.v1.QueueService")
            )
            dead = await stub.Check(
                health_pb2.HealthCheckRequest(service="ticketing.booking.v1.BookingService")
            )
    finally:
        await front.stop(0)
    assert alive.status == health_pb2.HealthCheckResponse.SERVING
    assert dead.status == health_pb2.HealthCheckResponse.NOT_SERVING


class _FailingCatalog(catalog_pb2_grpc.CatalogServiceServicer):
    async def GetEvent(self, request, context):
        raise NotFound(
            f"no event {request.event_id}",
            reason=Reason.EVENT_NOT_FOUND,
            metadata={"event_id": request.event_id},
        )

    async def ListEvents(self, request, context):
        raise RuntimeError("a bug")


async def test_domain_errors_become_status_with_error_info_and_bugs_become_internal():
    servicer = _FailingCatalog()
    server = build_server(
        BaseSettings(plaintext=True),
        [
            ServiceBinding(
                "ticketing.catalog.v1.CatalogService",
                lambda s: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, s),
            )
        ],
    )
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as not_found:
                await stub.GetEvent(catalog_pb2.GetEventRequest(event_id="e1"))
            with pytest.raises(grpc.aio.AioRpcError) as internal:
                await stub.ListEvents(catalog_pb2.ListEventsRequest())
            # The service is still up after a bug.
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    finally:
        await server.stop(0)
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    info = _error_info(not_found.value)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "EVENT_NOT_FOUND",
        "ticketing.dev",
        {"event_id": "e1"},
    )
    assert internal.value.code() == grpc.StatusCode.INTERNAL
    assert "a bug" not in (internal.value.details() or "")
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env.update(extra)
    return env


def test_missing_configuration_exits_2_naming_the_variable():
    result = subprocess.run(
        [sys.executable, "-m", "booking_svc"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "TICKETING_DATABASE_URL is required" in result.stderr
    assert "TICKETING_STRIPE_API_KEY is required" in result.stderr


def test_a_database_url_with_no_reachable_primary_stops_the_service_at_start_by_name(stack):
    """A multi-host URL none of whose hosts answers: booking waits
    TICKETING_STARTUP_TIMEOUT_SECONDS for a primary, then exits 2 naming TICKETING_DATABASE_URL
    (no traceback); the same settings with the stack's database start and serve."""
    import socket

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    settings = dict(
        TICKETING_REDIS_URL=stack.redis_url,
        TICKETING_STRIPE_API_BASE="http://127.0.0.1:1",
        TICKETING_STRIPE_API_KEY="sk_test_startup",
        TICKETING_STRIPE_WEBHOOK_SECRET="whsec_startup",
        TICKETING_ADMISSION_KEY="k",
        TICKETING_PLAINTEXT="true",
        TICKETING_WORKERS="1",
        TICKETING_STARTUP_TIMEOUT_SECONDS="2",
    )
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "booking_svc"],
        env=_env(
            TICKETING_DATABASE_URL=f"postgresql://nobody@{hosts}/ticketing"
            "?target_session_attrs=read-write",
            **settings,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    took = time.monotonic() - started
    print(f"\nno primary: exit {result.returncode} after {took:.1f} s: {result.stderr[-300:]}")
    assert result.returncode == 2, result.stderr
    assert "TICKETING_DATABASE_URL: no reachable primary" in result.stderr
    assert "Traceback" not in result.stderr

    # Control: the same process against the stack's Postgres comes up (SERVING).
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "booking_svc"],
        env=_env(
            TICKETING_DATABASE_URL=stack.database_url,
            TICKETING_LISTEN=f"127.0.0.1:{port}",
            **settings,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "booking did not start against the stack"
                time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_sigterm_turns_not_serving_then_exits_cleanly():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        # The search service starts without its engine (searches answer UNAVAILABLE meanwhile).
        [sys.executable, "-m", "search_svc"],
        env=_env(
            TICKETING_LISTEN=f"127.0.0.1:{port}",
            TICKETING_SEARCH_URL="http://127.0.0.1:1",
            TICKETING_PLAINTEXT="true",  # a process of the test's own on the loopback
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = health_pb2_grpc.HealthStub(channel)
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read()
    assert '"message": "search_svc stopping' in output
    assert '"message": "search_svc stopped"' in output


async def test_stopping_ends_a_background_job_that_swallowed_its_cancellation():
    """A job that lost the first cancellation (as a Redis call may on Python 3.11, see
    ticketing_common.cancellation) still ends: the server cancels again while it waits."""
    swallowed = []

    async def job() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(True)

    server = build_server(BaseSettings(plaintext=True), [], background=[job])
    await server.start()
    await asyncio.sleep(0.05)
    await asyncio.wait_for(server.stop(0), timeout=10)
    assert swallowed == [True]


async def test_mutual_tls_server_with_a_plaintext_health_only_port(tmp_path):
    """Under mutual TLS the service port wants a client certificate of the CA, while the
    health-only port (TICKETING_HEALTH_LISTEN, for the kubelet's probes) answers health in
    plaintext and nothing else; the health fan-out to a peer presents the process's own
    certificate."""
    from deploy.stack import certs
    from deploy.stack.state import StateDir
    from ticketing_common.tls import channel_credentials

    state = StateDir(tmp_path)
    certs.ensure_certs(state)
    own = certs.files_of(state, "catalog")

    def tls_settings(**more):
        return BaseSettings(
            tls_cert=str(own.cert), tls_key=str(own.key), tls_ca=str(own.ca), **more
        )

    peer = build_server(tls_settings(), [])
    await peer.start()
    await peer.health.set_own(
        "ticketing.queue.v1.QueueService", health_pb2.HealthCheckResponse.SERVING
    )
    server = build_server(
        tls_settings(
            health_listen="127.0.0.1:0",
            peers={"ticketing.queue.v1.QueueService": f"127.0.0.1:{peer.port}"},
        ),
        [],
    )
    await server.start()
    request = health_pb2.HealthCheckRequest()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(
                    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
                )(b"", timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(channel).Check(request, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        client = channel_credentials(certs.files_of(state, certs.OPERATOR))
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", client) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert (await stub.Check(request, timeout=10)).status == reply.status
            # Answered by asking the peer, over mutual TLS with the server's own certificate.
            queue = health_pb2.HealthCheckRequest(service="ticketing.queue.v1.QueueService")
            assert (await stub.Check(queue, timeout=10)).status == reply.status
    finally:
        await server.stop(0)
        await peer.stop(0)
