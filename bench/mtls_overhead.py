"""Benchmark: what mutual TLS costs one service call, in isolation.

    .venv/bin/python bench/mtls_overhead.py [--calls 20000] [--concurrency 32]

One process builds two servers with ``ticketing_common.server.build_server`` (so the same
interceptors run: the identity check reads the peer's certificate on every call under TLS):
one in plaintext (``BaseSettings(plaintext=True)``, the raw building block) and one with mutual
TLS (certificates of a throwaway development CA, ``deploy/stack/certs.py``), and calls
grpc.health.v1 Health/Check on each over one long-lived channel, ``--concurrency`` calls in
flight. Prints calls/s, p50 and p99 for both and the TLS run's ratio to plaintext, and appends
them to bench/RESULTS.md. Connection set-up (the handshake) is paid once per connection and is
not in these figures: Envoy keeps its upstream connections open.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.stack import certs
from deploy.stack.state import StateDir
from ticketing_common.server import build_server
from ticketing_common.settings import BaseSettings
from ticketing_common.tls import channel_credentials

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


async def measure(
    settings: BaseSettings, credentials: grpc.ChannelCredentials | None, calls: int, inflight: int
) -> dict[str, float]:
    server = build_server(settings, [])
    await server.start()
    target = f"127.0.0.1:{server.port}"
    channel = (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    )
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    latencies: list[float] = []
    remaining = calls

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await stub.Check(request, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)

    try:
        for _ in range(500):  # warm-up, and the handshake
            await stub.Check(request, timeout=30)
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(inflight)))
        seconds = time.perf_counter() - started
    finally:
        await channel.close()
        await server.stop(0)
    latencies.sort()
    return {
        "rps": len(latencies) / seconds,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        state = StateDir(Path(folder))
        certs.ensure_certs(state)
        own = certs.files_of(state, "booking")
        tls = BaseSettings(tls_cert=str(own.cert), tls_key=str(own.key), tls_ca=str(own.ca))
        client = channel_credentials(certs.files_of(state, certs.GATEWAY))
        rows = {}
        # Alternated, twice each, so a neighbour's load hits both alike.
        for round_ in (1, 2):
            rows[("plaintext", round_)] = await measure(
                BaseSettings(plaintext=True), None, args.calls, args.concurrency
            )
            rows[("mutual TLS", round_)] = await measure(tls, client, args.calls, args.concurrency)
    best = {
        kind: max((r for (k, _), r in rows.items() if k == kind), key=lambda r: r["rps"])
        for kind in ("plaintext", "mutual TLS")
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### Mutual TLS on one service call, {stamp}",
        "",
        f"`bench/mtls_overhead.py --calls {args.calls} --concurrency {args.concurrency}`: "
        "Health/Check through build_server's interceptors, one long-lived channel, client and "
        f"server in one process on a {os.cpu_count()}-core machine ({platform.machine()}); "
        "two alternated rounds each, the better one shown.",
        "",
        "| transport | calls/s | p50 ms | p99 ms | vs plaintext |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for kind, row in best.items():
        ratio = row["rps"] / best["plaintext"]["rps"]
        lines.append(
            f"| {kind} | {row['rps']:,.0f} | {row['p50']:.2f} | {row['p99']:.2f} | {ratio:.0%} |"
        )
    per_call_us = (1 / best["mutual TLS"]["rps"] - 1 / best["plaintext"]["rps"]) * 1e6
    lines += [
        "",
        f"Mutual TLS minus plaintext: {per_call_us:+.0f} µs per call (client and server side"
        " together; a negative figure is within this machine's noise).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    for (kind, round_), row in rows.items():
        print(f"  {kind} round {round_}: {row['rps']:,.0f}/s p50 {row['p50']:.2f} ms")
    with RESULTS.open("a") as out:
        out.write("\n" + text)


if __name__ == "__main__":
    asyncio.run(main())
