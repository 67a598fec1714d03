"""The queue asks the catalog for an event's policy over gRPC (queue_svc/adapters/catalog.py)
instead of reading its table. A catalog and a queue of the test's own (real processes, the
stack's Postgres and Redis) show it: killed with SIGKILL mid-sale, the catalog leaves an event
the queue has seen selling on its last answer, an event it has not seen gets UNAVAILABLE
(DEPENDENCY_UNAVAILABLE) within the call's deadline, and the queue, SERVING throughout, picks the
catalog up again as soon as it is back."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from deploy.stack import certs
from deploy.stack.components import service_env
from deploy.stack.state import StackConfig, StateDir
from tests.helpers import error_reason, make_event, make_venue, service_credentials, ts

pytestmark = pytest.mark.integration

CATALOG = "ticketing.catalog.v1.CatalogService"
QUEUE = "ticketing.queue.v1.QueueService"
READY_SECONDS = 90


def env_for(stack: Any, component: str, listen: str, **extra: str) -> dict[str, str]:
    config = StackConfig(gateway_port=stack.layout.gateway, port_base=stack.layout.base)
    env = service_env(config, StateDir(stack.state_dir), component)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env | {"TICKETING_LISTEN": listen, "TICKETING_METRICS_LISTEN": ""} | extra


def start(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )


def wait_serving(
    address: str, service: str, process: subprocess.Popen[bytes], credentials: Any
) -> None:
    deadline = time.monotonic() + READY_SECONDS
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{service} exited with status {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise AssertionError(f"{service} at {address} not serving after {READY_SECONDS} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def events(stack: Any) -> list[str]:
    """Two queue-enabled events on sale now, made through the gateway."""
    operator = (("authorization", f"Bearer {stack.token('ops-queue-catalog', role='operator')}"),)
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        made = []
        for days in (50, 51):
            venue = make_venue(catalog, operator, 1, 1, 10)
            made.append(
                make_event(
                    catalog,
                    operator,
                    venue.id,
                    days_ahead=days,
                    on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
                    queue_policy=catalog_pb2.QueuePolicy(
                        enabled=True,
                        admission_rate_per_minute=1,  # nobody admitted during the test
                        max_active_users=100,
                        admission_ttl_seconds=600,
                    ),
                ).id
            )
    return made


@pytest.fixture
def own_mesh(stack: Any, port_layout: Any) -> Iterator[dict[str, Any]]:
    # Ports below the ephemeral range, never handed out before in this session.
    base = port_layout().base
    catalog_address, queue_address = f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"
    catalog_env = env_for(stack, "catalog", catalog_address)
    procs = {"catalog": start("catalog_svc", catalog_env)}
    queue_env = env_for(
        stack,
        "queue",
        queue_address,
        TICKETING_PEERS=f"{CATALOG}={catalog_address}",
        # A database of the test's own in Redis: the stack's admitter stays out of it.
        TICKETING_REDIS_URL=stack.redis_url.rsplit("/", 1)[0] + "/3",
    )
    assert "TICKETING_DATABASE_URL" not in queue_env
    procs["queue"] = start("queue_svc", queue_env)
    # The test stands where the gateway stands: mutual TLS with the certificate whose identity
    # headers the services believe.
    credentials = service_credentials(stack, certs.GATEWAY)
    mesh = {
        "catalog": catalog_address,
        "queue": queue_address,
        "procs": procs,
        "credentials": credentials,
    }
    mesh["restart_catalog"] = lambda: procs.__setitem__(
        "catalog", start("catalog_svc", catalog_env)
    )
    try:
        wait_serving(catalog_address, CATALOG, procs["catalog"], credentials)
        wait_serving(queue_address, QUEUE, procs["queue"], credentials)
        yield mesh
    finally:
        for process in procs.values():
            stop(process)


def join(stub: Any, event_id: str, user: str) -> queue_pb2.QueueEntry:
    return stub.JoinQueue(
        queue_pb2.JoinQueueRequest(event_id=event_id),
        metadata=(("x-ticketing-user", user),),
        timeout=10,
    )


def test_a_killed_catalog_leaves_a_seen_sale_going_and_an_unseen_one_unavailable(own_mesh, events):
    seen, unseen = events
    with grpc.secure_channel(own_mesh["queue"], own_mesh["credentials"]) as channel:
        queue = queue_pb2_grpc.QueueServiceStub(channel)
        first = join(queue, seen, "before-kill")
        assert first.state == queue_pb2.QUEUE_ENTRY_STATE_WAITING

        own_mesh["procs"]["catalog"].send_signal(signal.SIGKILL)
        own_mesh["procs"]["catalog"].wait(timeout=10)
        killed = time.monotonic()

        # Past the cache's TTL (2 s), within its stale window (30 s): the last answer serves.
        time.sleep(2.5)
        during = [join(queue, seen, f"during-kill-{i}") for i in range(20)]
        assert all(e.state == queue_pb2.QUEUE_ENTRY_STATE_WAITING for e in during)
        assert sorted(e.position for e in during) == list(range(2, 22))

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            join(queue, unseen, "unseen-during-kill")
        refusal_seconds = time.monotonic() - started
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_reason(refused.value) == "DEPENDENCY_UNAVAILABLE"
        assert refusal_seconds < 10  # the catalog call's deadline (2 s), not a hang

        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=QUEUE), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        own_mesh["restart_catalog"]()
        wait_serving(
            own_mesh["catalog"], CATALOG, own_mesh["procs"]["catalog"], own_mesh["credentials"]
        )
        deadline, answered, errors = time.monotonic() + 60, None, 0
        while time.monotonic() < deadline:
            try:
                answered = join(queue, unseen, "unseen-after-restart")
                break
            except grpc.RpcError as exc:
                assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
                errors += 1
                time.sleep(0.2)
        unavailable_for = time.monotonic() - killed
        assert answered is not None, "the queue never reached the restarted catalog"
        assert answered.state == queue_pb2.QUEUE_ENTRY_STATE_WAITING
    print(
        f"catalog SIGKILLed: 20/20 joins of the seen sale served from the last answer; the "
        f"unseen event UNAVAILABLE in {refusal_seconds:.3f} s; reached again "
        f"{unavailable_for:.1f} s after the kill ({errors} refused calls after the restart)"
    )


def test_an_event_the_catalog_does_not_know_is_not_found(own_mesh):
    with grpc.secure_channel(own_mesh["queue"], own_mesh["credentials"]) as channel:
        queue = queue_pb2_grpc.QueueServiceStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            join(queue, "00000000-0000-4000-8000-000000000000", "nobody")
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert error_reason(missing.value) == "EVENT_NOT_FOUND"
