"""What tracing costs on the hot path, in one run.

A real gRPC server on loopback built by the shared bootstrap (``build_server``: the tracing
interceptor when tracing is on, then the shared ``ServiceInterceptor``), unary calls per second
from a client in the same process. Each round is a fresh interpreter, alternating:
- off: no ``OTEL_EXPORTER_OTLP_ENDPOINT`` (what every process runs with unless told otherwise:
  no SDK, the API's no-op tracer, no interceptor);
- on: the endpoint set to an OTLP/HTTP receiver in this process (it decodes and counts what it
  gets), so every call makes a server span that is batched and exported.

Prints the figures and appends them to bench/RESULTS.md.

    .venv/bin/python bench/tracing_overhead.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
CALLS = int(os.environ.get("BENCH_CALLS", 20_000))
ROUNDS = 3  # of each, alternating

# One round: start the server, warm up, time CALLS unary calls (50 in flight), print calls/s.
ROUND = f"""
import asyncio, json, time
import grpc
from ticketing_common import tracing
from ticketing_common.server import ServiceBinding, build_server
from ticketing_common.settings import BaseSettings

CALLS = {CALLS}

async def echo(request, context):
    return request

# A service of its own: health checks are not traced (ticketing_common.tracing).
handler = grpc.method_handlers_generic_handler(
    "bench.v1.Bench", {{"Echo": grpc.unary_unary_rpc_method_handler(echo)}}
)

async def main():
    on = tracing.configure("bench")
    binding = ServiceBinding("bench.v1.Bench", lambda s: s.add_generic_rpc_handlers([handler]))
    server = build_server(BaseSettings(plaintext=True), [binding])
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{{server.port}}") as channel:
        call = channel.unary_unary("/bench.v1.Bench/Echo")
        request = b"ping"
        for _ in range(20):
            await asyncio.gather(*(call(request) for _ in range(50)))
        started = time.perf_counter()
        for _ in range(CALLS // 50):
            await asyncio.gather(*(call(request) for _ in range(50)))
        rate = CALLS / (time.perf_counter() - started)
    await server.stop(0)
    tracing.shutdown()
    print(json.dumps({{"on": on, "rate": rate}}))

asyncio.run(main())
"""


class Receiver:
    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.spans = 0
        self.failed = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                    count = sum(
                        len(scope.spans)
                        for resource in request.resource_spans
                        for scope in resource.scope_spans
                    )
                except Exception:
                    with receiver.lock:
                        receiver.failed += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.spans += count
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def one_round(endpoint: str | None, **otel: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel
    if endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    out = subprocess.run(
        [sys.executable, "-c", ROUND],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["on"] is bool(endpoint), result
    return float(result["rate"])


def main() -> None:
    receiver = Receiver()
    endpoint = f"http://127.0.0.1:{receiver.port}"
    on: list[float] = []
    off: list[float] = []
    sampled: list[float] = []
    # What a deployment that samples 1% of the new traces pays (the SDK reads these variables).
    one_percent = {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    }
    for _ in range(ROUNDS):  # alternate, so all see the same machine
        off.append(one_round(None))
        on.append(one_round(endpoint))
        sampled.append(one_round(endpoint, **one_percent))
    receiver.httpd.shutdown()
    on_rate, off_rate = statistics.median(on), statistics.median(off)
    sampled_rate = statistics.median(sampled)
    per_call_us = (1 / on_rate - 1 / off_rate) * 1e6
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### The cost of tracing, {stamp}",
        "",
        f"`bench/tracing_overhead.py`; one {os.cpu_count()}-core machine ({platform.machine()}),"
        " client and server in one process, a fresh one per round, the OTLP/HTTP receiver in"
        " the benchmark's own process. Shared machine: other jobs ran at the same time.",
        "",
        "| measure | figure |",
        "| --- | ---: |",
        f"| unary calls/s, tracing off (no endpoint; median of {len(off)} rounds) |"
        f" {off_rate:,.0f} |",
        f"| unary calls/s, tracing on (a server span per call, exported) | {on_rate:,.0f} |",
        f"| ratio on/off | {on_rate / off_rate:.1%} |",
        f"| cost per call, from the rates | {per_call_us:.1f} µs |",
        f"| unary calls/s, tracing on, 1% of the traces sampled | {sampled_rate:,.0f} |",
        f"| ratio sampled/off | {sampled_rate / off_rate:.1%} |",
        f"| rounds off / on / 1% | {' · '.join(f'{r:,.0f}' for r in off)} /"
        f" {' · '.join(f'{r:,.0f}' for r in on)} / {' · '.join(f'{r:,.0f}' for r in sampled)} |",
        f"| spans received (all on rounds, {CALLS:,} timed calls + 1,000 warm-up each) |"
        f" {receiver.spans:,} ({receiver.failed} bad requests) |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with RESULTS.open("a") as out:
        out.write("\n" + text)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
