"""`ticketing up/status/down` as a developer uses them: the stack starts, reports, answers through
the gateway, stops without leaving anything behind, fails cleanly, and keeps its data."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

pytestmark = pytest.mark.integration

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
SERVICES = (
    "ticketing.catalog.v1.CatalogService",
    "ticketing.search.v1.SearchService",
    "ticketing.booking.v1.BookingService",
    "ticketing.queue.v1.QueueService",
)


def _wait_until(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _stack_json(state_dir: Path) -> dict:
    return json.loads((state_dir / "run" / "stack.json").read_text())


def _pids(state_dir: Path) -> list[int]:
    snapshot = _stack_json(state_dir)
    return [snapshot["supervisor_pid"]] + [c["pid"] for c in snapshot["components"] if c["pid"]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def _listening(ports: dict[str, int]) -> list[str]:
    from deploy.stack.ports import is_port_free

    return [f"{name}:{port}" for name, port in ports.items() if not is_port_free(port)]


# -- the shared stack ------------------------------------------------------------------------


def test_status_exits_zero_and_lists_every_component(stack, ticketing):
    result = ticketing(stack.state_dir, "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "postgres",
        "redis",
        "search-engine",
        "fake-stripe",
        "catalog",
        "search",
        "booking",
        "queue",
        "cdc-worker",
        "envoy",
    ):
        assert name in result.stdout


def test_grpcurl_lists_the_four_services_through_the_gateway(stack):
    import subprocess

    listed = subprocess.run(
        [GRPCURL, "-plaintext", stack.gateway, "list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert set(SERVICES) <= set(listed.stdout.split())


@pytest.mark.parametrize("service", SERVICES)
def test_health_through_the_gateway_is_serving(stack, service):
    with grpc.insecure_channel(stack.gateway) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_stack_addresses_answer(stack):
    with psycopg.connect(stack.database_url, connect_timeout=5) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
    host, port = stack.redis_url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(16).startswith(b"+PONG")


# -- stacks of their own ---------------------------------------------------------------------


def test_down_stops_every_process_and_frees_every_port(
    ticketing, port_layout, state_dir_factory, stack_processes
):
    state_dir, layout = state_dir_factory(), port_layout()
    up = ticketing(state_dir, "up", "--detach", "--demo-data", "none", *layout.up_args())
    assert up.returncode == 0, up.stdout + up.stderr
    pids = _pids(state_dir)
    # The supervisor and its twelve components (Prometheus among them: `make test` installs it).
    assert len(pids) == 13
    status = ticketing(state_dir, "status")
    assert status.returncode == 0
    assert "booking-metrics" not in status.stdout  # shown as the booking row's metrics port
    assert f"(metrics {layout.ports['booking-metrics']})" in status.stdout
    assert f"Prometheus on http://127.0.0.1:{layout.ports['prometheus']}" in status.stdout

    down = ticketing(state_dir, "down", timeout=120)

    assert down.returncode == 0, down.stdout + down.stderr
    assert [pid for pid in pids if _alive(pid)] == []
    assert stack_processes(state_dir) == []
    assert _listening(layout.ports) == []
    assert ticketing(state_dir, "status").returncode != 0


def test_a_taken_port_fails_the_start_by_name_and_leaves_nothing(
    ticketing, port_layout, state_dir_factory, stack_processes
):
    state_dir, layout = state_dir_factory(), port_layout()
    taken = layout.ports["booking"]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        up = ticketing(state_dir, "up", "--detach", "--demo-data", "none", *layout.up_args())
        output = up.stdout + up.stderr

        assert up.returncode != 0
        assert "booking" in output and str(taken) in output, output
        assert _wait_until(lambda: stack_processes(state_dir) == []), stack_processes(state_dir)
        others = {name: port for name, port in layout.ports.items() if port != taken}
        assert _listening(others) == []
    assert ticketing(state_dir, "status").returncode != 0


def test_a_killed_supervisor_takes_every_component_with_it(
    ticketing, port_layout, state_dir_factory, stack_processes
):
    state_dir, layout = state_dir_factory(), port_layout()
    up = ticketing(state_dir, "up", "--detach", "--demo-data", "none", *layout.up_args())
    assert up.returncode == 0, up.stdout + up.stderr

    os.kill(_stack_json(state_dir)["supervisor_pid"], signal.SIGKILL)

    assert _wait_until(lambda: stack_processes(state_dir) == [], 30), stack_processes(state_dir)
    assert _wait_until(lambda: _listening(layout.ports) == [])


def test_a_component_that_dies_is_restarted(ticketing, port_layout, state_dir_factory):
    state_dir, layout = state_dir_factory(), port_layout()
    up = ticketing(state_dir, "up", "--detach", "--demo-data", "none", *layout.up_args())
    assert up.returncode == 0, up.stdout + up.stderr
    [queue] = [c for c in _stack_json(state_dir)["components"] if c["name"] == "queue"]

    os.kill(queue["pid"], signal.SIGKILL)

    def restarted() -> bool:
        [now] = [c for c in _stack_json(state_dir)["components"] if c["name"] == "queue"]
        return now["status"] == "running" and now["pid"] not in (None, queue["pid"])

    assert _wait_until(restarted, 30), _stack_json(state_dir)
    assert ticketing(state_dir, "status").returncode == 0
    assert "queue was killed by SIGKILL" in (state_dir / "logs" / "supervisor.log").read_text()


def test_a_second_up_reuses_the_database(ticketing, port_layout, state_dir_factory):
    state_dir, layout = state_dir_factory(), port_layout()
    first = ticketing(state_dir, "up", "--detach", "--demo-data", "small", *layout.up_args())
    assert first.returncode == 0, first.stdout + first.stderr
    database_url = f"postgresql://postgres@127.0.0.1:{layout.base}/ticketing"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept_across_restarts (note text)")
        conn.execute("INSERT INTO kept_across_restarts VALUES ('still here')")
    cluster_version = (state_dir / "postgres" / "PG_VERSION").stat()
    assert ticketing(state_dir, "down", timeout=120).returncode == 0

    # No flags: the ports chosen by the first `up` are reused.
    second = ticketing(state_dir, "up", "--detach", "--demo-data", "small")
    assert second.returncode == 0, second.stdout + second.stderr

    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT note FROM kept_across_restarts").fetchall() == [("still here",)]
    assert (state_dir / "postgres" / "PG_VERSION").stat().st_ino == cluster_version.st_ino
    log = (state_dir / "logs" / "supervisor.log").read_text()
    assert log.count("creating the cluster") == 1
    assert log.count("created database ticketing") == 1
    assert "not seeding" in log
