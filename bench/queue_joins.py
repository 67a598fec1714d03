"""Benchmark: JoinQueue through the gateway, each request a different buyer.

    .venv/bin/python bench/queue_joins.py [--duration 10] [--connections 64] [--processes 1]

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports), creates a
queue-enabled event that is on sale (admitting 60 a minute, so the line only grows), signs
JWTs for ``--buyers`` new buyers per run, then measures joins per second three ways:

- REST, ``POST /queue/{id}/join`` transcoded by Envoy, driven by wrk (2 threads) with a Lua
  script that gives every request the next buyer's bearer token;
- native gRPC, ``JoinQueue`` from two Python client processes (grpc.aio, ``--connections``
  streams in flight in total);
- the same clients straight to the queue_svc port, without Envoy (the caller in
  ``x-ticketing-user``, as the gateway would pass it, over mutual TLS with the gateway's
  certificate, the one whose identity headers the service believes);
- the raw building block: the join script itself, ``EVALSHA`` with each buyer's keys and
  arguments exactly as queue_svc sends them (``QueueStore._join_call``), pre-encoded and
  pipelined (two windows of ``--raw-depth`` calls in flight) over one connection to the same
  Redis, into the same event's line: what Redis alone can do. The gateway's rate is reported
  as a share of it (goal: at least 25%).

A run that uses up its buyers says so (a buyer joining again costs less than a new one).

``--processes N`` adds N-1 queue_svc processes listening on the same port as the stack's
(SO_REUSEPORT, as build_server sets it), started with the stack's own environment. The CPU time
each process used is reported, to show where the load went. Appends to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import redis.asyncio as redis
from common import aio_channel, as_gateway
from queue_common import (
    BenchStack,
    append_results,
    bench_stack,
    cpu_seconds,
    machine,
    queue_event,
    wait_until,
)
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from deploy.stack.components import service_env
from deploy.stack.state import StateDir
from queue_svc.adapters.redis_store import _SCRIPTS, QueueStore
from ticketing_common.tls import TlsFiles

WRK_SCRIPT = """
local tokens = {}
local counter = 0
local threads = 0
function setup(thread)
  thread:set("thread_offset", threads)
  threads = threads + 1
end
function init(args)
  for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
end
wrk.method = "POST"
wrk.body = "{}"
function request()
  counter = counter + 1
  local token = tokens[((counter * 2 + (thread_offset or 0)) %% #tokens) + 1]
  local headers = {["content-type"] = "application/json", ["authorization"] = "Bearer " .. token}
  return wrk.format(nil, nil, headers)
end
"""


def wrk(url: str, script: Path, connections: int, duration: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "rps": rps,
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def grpc_worker(
    args: tuple[str, str, list[tuple[str, str]], int, float, TlsFiles | None],
) -> tuple[int, int, list]:
    """One client process: ``concurrency`` calls in flight over two connections, each call
    with the next buyer's credentials (a header name and value), for ``duration`` seconds;
    ``tls`` the client certificate towards a service's port (None: the gateway, h2c)."""
    target, event_id, credentials, concurrency, duration, tls = args

    async def run() -> tuple[int, int, list[float]]:
        ok, failed, latencies = 0, 0, []
        queue = iter(credentials)
        # A local subchannel pool per channel: two real connections, not one shared.
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [aio_channel(target, tls, options) for _ in range(2)]
        request = queue_pb2.JoinQueueRequest(event_id=event_id)
        deadline = time.monotonic() + duration

        async def loop(stub: queue_pb2_grpc.QueueServiceStub) -> None:
            nonlocal ok, failed
            while time.monotonic() < deadline:
                credential = next(queue, None)
                if credential is None:
                    return
                started = time.perf_counter()
                try:
                    await stub.JoinQueue(request, metadata=(credential,))
                    ok += 1
                    latencies.append((time.perf_counter() - started) * 1000)
                except grpc.aio.AioRpcError:
                    failed += 1

        stubs = [queue_pb2_grpc.QueueServiceStub(c) for c in channels]
        await asyncio.gather(*(loop(stubs[i % 2]) for i in range(concurrency)))
        for channel in channels:
            await channel.close()
        return ok, failed, latencies

    return asyncio.run(run())


def grpc_joins(
    target: str,
    event_id: str,
    credentials,
    connections: int,
    duration: int,
    tls: TlsFiles | None = None,
):
    workers = 2
    slices = [credentials[i::workers] for i in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        results = pool.map(
            grpc_worker,
            [(target, event_id, s, connections // workers, duration, tls) for s in slices],
        )
    ok = sum(r[0] for r in results)
    latencies = sorted(x for r in results for x in r[2])
    return {
        "exhausted": ok + sum(r[1] for r in results) >= len(credentials),
        "rps": ok / duration,
        "p50_ms": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "errors": float(sum(r[1] for r in results)),
    }


def _resp(*parts: object) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Replies:
    """Counts RESP replies (bulk strings and errors, what EVALSHA of join.lua answers),
    reading the socket's bytes in place (an offset, no copy per reply)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._at = 0
        self.errors: list[bytes] = []

    def _more(self) -> None:
        chunk = self._sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        self._buf = self._buf[self._at :] + chunk
        self._at = 0

    def take(self, count: int) -> None:
        while count:
            end = self._buf.find(b"\r\n", self._at)
            if end < 0:
                self._more()
                continue
            kind = self._buf[self._at : self._at + 1]
            if kind == b"$":
                size = int(self._buf[self._at + 1 : end])
                if len(self._buf) < end + 2 + size + 2:
                    self._more()
                    continue
                self._at = end + 2 + size + 2
            else:
                if kind == b"-":
                    self.errors.append(self._buf[self._at : end])
                self._at = end + 2
            count -= 1


def raw_joins(redis_port: int, event_id: str, users: list[str], duration: int, depth: int):
    """The join script straight to Redis, pipelined (see the module's docstring)."""
    # Only its key layout (the service's defaults: 60 s grace, 4,096 buckets); never connects.
    store = QueueStore(redis.Redis(), grace_seconds=60.0, user_buckets=4096)
    sock = socket.create_connection(("127.0.0.1", redis_port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(_resp("SCRIPT", "LOAD", _SCRIPTS["join"]))
    answer = b""
    while answer.count(b"\r\n") < 2:
        answer += sock.recv(1 << 16)
    sha = answer.split(b"\r\n")[1]
    replies = _Replies(sock)
    now_ms = int(time.time() * 1000)
    # queue_event's policy: opened a minute ago, the line kept long after the run.
    open_ms, expire_at = now_ms - 60_000, now_ms + 800 * 86_400_000
    batches = []
    for i in range(0, len(users), depth):
        calls = []
        for user in users[i : i + depth]:
            keys, args = store._join_call(event_id, user, open_ms, expire_at, 0)
            calls.append(_resp("EVALSHA", sha, len(keys), *keys, *args))
        batches.append((b"".join(calls), len(calls)))
    done, in_flight = 0, []
    started = time.perf_counter()
    deadline = started + duration
    for body, size in batches:
        sock.sendall(body)
        in_flight.append(size)
        if len(in_flight) > 1:  # two windows in flight: Redis never waits for this client
            replies.take(in_flight[0])
            done += in_flight.pop(0)
        if time.perf_counter() >= deadline:
            break
    for size in in_flight:
        replies.take(size)
        done += size
    seconds = time.perf_counter() - started
    sock.close()
    return {
        "exhausted": done >= len(users),
        "rps": done / seconds,
        "p50_ms": 0.0,
        "p99_ms": 0.0,
        "errors": float(len(replies.errors)),
    }


def extra_queue_processes(stack: BenchStack, count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` more queue_svc processes on the stack's queue port. Like the siblings
    TICKETING_WORKERS starts, they serve no /metrics of their own: the stack's process holds
    that port, and a second process asking for it exits at start (which left the 2026-12-03
    runs of ``--processes 2`` with one process)."""
    env = service_env(stack.config, StateDir(stack.state), "queue")
    env |= {"TICKETING_METRICS_LISTEN": "", "TICKETING_WORKERS": "1"}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "queue_svc"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=tempfile.TemporaryFile(),
        )
        for _ in range(count)
    ]


def require_running(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the run if an extra process has exited: its CPU would read as 0, not as a fault."""
    for proc in procs:
        if proc.poll() is not None:
            raise SystemExit(f"an extra queue_svc process exited ({proc.returncode})")


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        try:
            found[name] = cpu_seconds(pid)
        except FileNotFoundError:
            found[name] = 0.0
    return found


def measure(stack: BenchStack, args: argparse.Namespace) -> dict[str, object]:
    event_id = queue_event(stack, rate=60)
    per_run = args.buyers
    users = [f"bench-buyer-{i:06d}" for i in range(3 * per_run)]
    tokens = stack.tokens(users[: 2 * per_run])
    workdir = Path(tempfile.mkdtemp(prefix="queue-joins-"))
    token_file = workdir / "tokens.txt"
    token_file.write_text("\n".join(tokens[:per_run]) + "\n")
    script = workdir / "join.lua"
    script.write_text(WRK_SCRIPT % {"tokens": token_file})
    bearer = [("authorization", f"Bearer {t}") for t in tokens[per_run:]]
    direct = [("x-ticketing-user", u) for u in users[2 * per_run :]]
    raw_users = [f"bench-raw-{i:07d}" for i in range(args.raw_buyers)]

    extras = extra_queue_processes(stack, args.processes - 1)
    time.sleep(3.0)  # the extra processes import, connect and listen
    require_running(extras)
    pids = {name: stack.pid(name) for name in ("queue", "envoy", "redis")}
    pids |= {f"queue+{i + 1}": p.pid for i, p in enumerate(extras)}
    url = f"http://{stack.gateway}/queue/{event_id}/join"
    service = f"127.0.0.1:{stack.ports.of('queue')}"
    redis_port = stack.ports.of("redis")
    # Straight to the queue_svc port as the gateway reaches it: its certificate (mutual TLS).
    gateway_tls = as_gateway(stack.state)
    results: dict[str, object] = {}
    try:
        warm = [("x-ticketing-user", f"warm-up-{i}") for i in range(5000)]
        grpc_joins(service, event_id, warm, args.connections, 2, gateway_tls)
        n, seconds = args.connections, args.duration
        runs = (
            ("rest", lambda: wrk(url, script, n, seconds) | {"tokens": per_run}),
            ("grpc", lambda: grpc_joins(stack.gateway, event_id, bearer, n, seconds)),
            ("direct", lambda: grpc_joins(service, event_id, direct, n, seconds, gateway_tls)),
            ("raw", lambda: raw_joins(redis_port, event_id, raw_users, seconds, args.raw_depth)),
        )
        for name, run in runs:
            before, started = cpu_of(pids), time.monotonic()
            results[name] = run()
            require_running(extras)
            results[f"{name}_cpu"] = _share(before, cpu_of(pids), time.monotonic() - started)
    finally:
        for proc in extras:
            proc.terminate()
        for proc in extras:
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def _share(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {name: (after[name] - before[name]) / seconds for name in before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--buyers", type=int, default=30_000, help="new buyers per run")
    parser.add_argument("--raw-buyers", type=int, default=600_000, help="for the raw run")
    parser.add_argument("--raw-depth", type=int, default=500, help="raw run: calls per window")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    with bench_stack(start=25000) as stack:
        if not wait_until(lambda: _healthy(stack), timeout=60):
            raise SystemExit("the stack's queue service did not come up")
        result = measure(stack, args)
    report(result, args)


def _healthy(stack: BenchStack) -> bool:
    try:
        stack.pid("queue")
        return True
    except LookupError:
        return False


def _per_join(cpu: dict[str, float], rps: float) -> str:
    """CPU milliseconds per join of every queue_svc process together, and of Envoy: the cost
    of a call, which a machine busy with other work does not change the way it changes the
    rate."""
    if rps <= 0:
        return "-"
    queue = sum(v for k, v in cpu.items() if k.startswith("queue"))
    return f"{queue / rps * 1000:.2f} / {cpu.get('envoy', 0.0) / rps * 1000:.2f}"


def report(r: dict, args: argparse.Namespace) -> None:
    command = (
        f"bench/queue_joins.py --duration {args.duration} --connections {args.connections} "
        f"--processes {args.processes}"
    )
    lines = [
        f"Each request a new buyer (a different JWT subject); {args.processes} queue_svc "
        f"process(es) on one port; clients, Envoy, services, Redis and Postgres on one "
        f"{machine()}.",
        "",
        "| path | joins/s | p50 ms | p99 ms | errors | CPU (cores) used by | CPU ms per join: "
        "queue_svc / Envoy |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, label in (
        ("rest", "gateway, REST (wrk, 2 threads)"),
        ("grpc", "gateway, native gRPC (2 Python client processes)"),
        ("direct", "queue_svc port directly, no Envoy (same clients)"),
        ("raw", "raw: EVALSHA of the join script pipelined to Redis (one connection)"),
    ):
        m, cpu = r[name], r[f"{name}_cpu"]
        used = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        per_join = _per_join(cpu, m["rps"]) if name != "raw" else "-"
        if m.get("exhausted") or m["rps"] * args.duration >= m.get("tokens", float("inf")):
            label += " (ran out of new buyers: at least this)"
        lines.append(
            f"| {label} | {m['rps']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
            f"{m['errors']:.0f} | {used} | {per_join} |"
        )
    best = max(r["rest"]["rps"], r["grpc"]["rps"])
    share = best / r["raw"]["rps"]
    lines += [
        "",
        f"Gateway (best of REST and gRPC) vs the raw script: **{share:.1%}** "
        f"({best:,.0f} / {r['raw']['rps']:,.0f}); goal at least 25%: "
        f"**{'met' if share >= 0.25 else 'not met'}**. "
        f"Goal 2,000 joins/s: {'met' if best >= 2000 else 'not met'} ({best:,.0f}).",
    ]
    append_results("Queue: joins through the gateway", command, lines, args.no_record)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
