"""What the gRPC server metrics cost on the hot path, in one run.

1. The recording alone: ``CallMetrics.started()`` + ``handled()`` per call, with the default
   in-process registry and in prometheus_client's multiprocess mode (what a service with several
   worker processes uses: every update is a write to a memory-mapped file).
2. A real gRPC server on loopback, the shared bootstrap's interceptor included: unary calls per
   second with the metrics recorded, and with the recording replaced by a no-op, alternating
   rounds so both see the same machine.
3. The hold path's own counters (``booking_svc/metrics.py``) per reservation taken: as they were
   (``outcome`` only) and with the per-event label (``event_id`` through ``BoundedLabel``, 20
   events in turn), each in a fresh interpreter, both registries; the ratio is to the former.

Prints the figures and appends them to bench/RESULTS.md.

    .venv/bin/python bench/metrics_overhead.py
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
CALLS = 20_000


def recording_cost(multiprocess: bool) -> float:
    """Microseconds per call of started() + handled(), measured in a fresh interpreter (the
    multiprocess mode is chosen when prometheus_client is imported)."""
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory() as shared:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = shared
        code = (
            "import time\n"
            "from ticketing_common.metrics import CallMetrics\n"
            "m = CallMetrics('/bench.v1.Bench/Call', 'unary')\n"
            f"n = {CALLS * 5}\n"
            "t = time.perf_counter()\n"
            "for _ in range(n):\n"
            "    m.started(); m.handled('OK', 0.001)\n"
            "print((time.perf_counter() - t) / n * 1e6)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip())


_HOLD_SNIPPET = """
import time
from prometheus_client import Counter
from booking_svc import metrics
n = {n}
if {per_event}:
    events = [f"event-{{i}}" for i in range(20)]
    def hold(i):
        event = metrics.event_label(events[i % 20])
        metrics.HOLDS.labels(event, "TAKEN").inc()
        metrics.TICKETS_HELD.labels(event).inc(2)
else:  # the counters as they were before the event label
    holds = Counter("bench_holds_total", "", ["outcome"])
    held = Counter("bench_tickets_held_total", "")
    def hold(i):
        holds.labels("TAKEN").inc()
        held.inc(2)
t = time.perf_counter()
for i in range(n):
    hold(i)
print((time.perf_counter() - t) / n * 1e6)
"""


def hold_counting_cost(per_event: bool, multiprocess: bool) -> float:
    """Microseconds per reservation taken to count it, in a fresh interpreter."""
    env = dict(os.environ)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with tempfile.TemporaryDirectory() as shared:
        if multiprocess:
            env["PROMETHEUS_MULTIPROC_DIR"] = shared
        code = _HOLD_SNIPPET.format(n=CALLS * 5, per_event=per_event)
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    return float(out.stdout.strip())


async def calls_per_second(with_metrics: bool, rounds: int = 3) -> list[float]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ticketing_common import interceptors
    from ticketing_common.server import build_server
    from ticketing_common.settings import BaseSettings

    class Nothing:
        def started(self) -> None:
            pass

        def handled(self, code: str, seconds: float) -> None:
            pass

    real = interceptors._calls
    interceptors._CALLS.clear()
    if not with_metrics:
        interceptors._calls = lambda method, kind: Nothing()  # type: ignore[assignment,return-value]
    server = build_server(BaseSettings(plaintext=True), [])
    await server.start()
    rates = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(CALLS // 50):
                    await asyncio.gather(*(stub.Check(request) for _ in range(50)))
                rates.append(CALLS / (time.perf_counter() - started))
    finally:
        await server.stop(0)
        interceptors._calls = real
        interceptors._CALLS.clear()
    return rates


def main() -> None:
    single = recording_cost(False)
    shared = recording_cost(True)
    on: list[float] = []
    off: list[float] = []
    for _ in range(2):  # alternate, so both see the same machine
        off += asyncio.run(calls_per_second(False))
        on += asyncio.run(calls_per_second(True))
    on_rate, off_rate = statistics.median(on), statistics.median(off)
    holds = {
        (per_event, shared_mode): statistics.median(
            hold_counting_cost(per_event, shared_mode) for _ in range(3)
        )
        for shared_mode in (False, True)
        for per_event in (False, True)
    }
    per_call_us = (1 / on_rate - 1 / off_rate) * 1e6
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### The cost of the gRPC server metrics, {stamp}",
        "",
        f"`bench/metrics_overhead.py`; one {os.cpu_count()}-core machine ({platform.machine()}),"
        " client and server in one process.",
        "",
        "| measure | figure |",
        "| --- | ---: |",
        f"| recording per call, in-process registry | {single:.2f} µs |",
        f"| recording per call, multiprocess mode (mmap files) | {shared:.2f} µs |",
        f"| unary calls/s, metrics off (median of {len(off)} rounds) | {off_rate:,.0f} |",
        f"| unary calls/s, metrics on | {on_rate:,.0f} |",
        f"| ratio on/off | {on_rate / off_rate:.1%} |",
        f"| cost per call, from the rates | {per_call_us:.1f} µs |",
        "",
        "The hold path's counters per reservation taken (holds + tickets held; median of 3"
        " fresh interpreters), before and with the per-event `event_id` label:",
        "",
        "| registry | outcome only | with event_id | ratio |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {holds[(False, mode)]:.2f} µs | {holds[(True, mode)]:.2f} µs"
            f" | {holds[(True, mode)] / holds[(False, mode)]:.2f}x |"
            for name, mode in (("in-process", False), ("multiprocess (mmap)", True))
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with RESULTS.open("a") as out:
        out.write("\n" + text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
