"""Two queue_svc processes on one port (TICKETING_WORKERS, SO_REUSEPORT): buyers' joins through
the gateway reach both, because the gateway recycles its upstream connections and the kernel
places each new one on either process. The control shows what the test would see if the
gateway kept its calls on connections it had opened once: every call of one long-lived
connection lands on one process and the other counts none. Each process's own /metrics says
how many joins it handled; the test prints the split."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest
from ticketing.catalog.v1 import catalog_pb2
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from deploy.stack.components import service_env
from deploy.stack.keys import claims_for, ensure_keys, sign
from deploy.stack.state import StackConfig, StateDir
from tests.helpers import make_event, make_venue, service_channel, ts

pytestmark = pytest.mark.integration

JOINS = 3000
IN_FLIGHT = 64
CONTROL_JOINS = 300


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-queue-workers', role='operator')}"),)


def _on_sale_event(catalog, operator) -> str:
    """A queue-enabled event on sale since a minute ago, admitting 60 a minute: every join in
    this test adds a buyer to the line."""
    venue = make_venue(catalog, operator, 1, 1, 10)
    return make_event(
        catalog,
        operator,
        venue.id,
        days_ahead=30,
        on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
        queue_policy=catalog_pb2.QueuePolicy(
            enabled=True,
            admission_rate_per_minute=60,
            max_active_users=1_000_000,
            admission_ttl_seconds=600,
        ),
    ).id


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def handled_joins(metrics_port: int) -> float:
    """JoinQueue calls a process (or a service's processes sharing one metrics directory)
    reports as handled, whatever their code."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("grpc_server_handled_total{") and 'grpc_method="JoinQueue"' in line
    )


@pytest.fixture
def second_worker(stack) -> Iterator[int]:
    """A second queue_svc process on the stack's queue port, started with the stack's own
    environment except its metrics: a port of its own, counting this process alone. Yields
    that metrics port."""
    config = StackConfig(gateway_port=stack.layout.gateway, port_base=stack.layout.base)
    metrics_port = _free_port()
    env = service_env(config, StateDir(stack.state_dir), "queue")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {"TICKETING_METRICS_LISTEN": f"127.0.0.1:{metrics_port}", "TICKETING_WORKERS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "queue_svc"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    serving = threading.Event()
    lines: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "queue_svc serving" in line:
                serving.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not serving.wait(60):
            pytest.fail("the second queue process did not start:\n" + "".join(lines[-20:]))
        yield metrics_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)


def _tokens(stack, count: int) -> list[str]:
    key = ensure_keys(StateDir(stack.state_dir))
    run = uuid.uuid4().hex[:8]
    return [sign(key, claims_for(f"spread-{run}-{i}")) for i in range(count)]


async def _join_all(target: str, event_id: str, tokens: list[str]) -> int:
    """Every token joins once through the gateway, IN_FLIGHT at a time; returns the joins
    answered OK."""
    ok = 0
    pending = iter(tokens)
    request = queue_pb2.JoinQueueRequest(event_id=event_id)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = queue_pb2_grpc.QueueServiceStub(channel)

        async def loop() -> None:
            nonlocal ok
            for token in pending:
                await stub.JoinQueue(request, metadata=(("authorization", f"Bearer {token}"),))
                ok += 1

        await asyncio.gather(*(loop() for _ in range(IN_FLIGHT)))
    return ok


def test_joins_through_the_gateway_reach_both_processes_of_the_queue_port(
    stack, catalog, operator, second_worker
):
    event_id = _on_sale_event(catalog, operator)
    first_metrics = stack.ports["queue-metrics"]

    # Control: one long-lived connection straight to the port, as a pool that never opens
    # another would be. The kernel placed it on one process, which gets every call.
    before = handled_joins(first_metrics), handled_joins(second_worker)
    with service_channel(stack, "queue", holder="gateway") as channel:
        stub = queue_pb2_grpc.QueueServiceStub(channel)
        run = uuid.uuid4().hex[:8]
        for i in range(CONTROL_JOINS):
            stub.JoinQueue(
                queue_pb2.JoinQueueRequest(event_id=event_id),
                metadata=(("x-ticketing-user", f"pinned-{run}-{i}"),),
            )
    after = handled_joins(first_metrics), handled_joins(second_worker)
    control = sorted(a - b for a, b in zip(after, before, strict=True))
    print(f"\none connection, {CONTROL_JOINS} joins: per process {control}")
    assert control == [0, CONTROL_JOINS]

    # Through the gateway: both processes take a share of the buyers.
    tokens = _tokens(stack, JOINS)
    before = after
    started = time.monotonic()
    ok = asyncio.run(_join_all(stack.gateway, event_id, tokens))
    seconds = time.monotonic() - started
    after = handled_joins(first_metrics), handled_joins(second_worker)
    split = [a - b for a, b in zip(after, before, strict=True)]
    print(
        f"gateway, {JOINS} joins ({ok / seconds:.0f}/s): stack's process {split[0]:.0f}, "
        f"second process {split[1]:.0f}"
    )
    assert ok == JOINS
    assert sum(split) == JOINS
    assert min(split) >= JOINS * 0.1, split
