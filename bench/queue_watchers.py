"""Benchmark: 10,000 concurrent WatchQueue streams on one machine.

    .venv/bin/python bench/queue_watchers.py [--watchers 10000] [--seconds 45] [--direct]

Starts a stack of its own, creates an on-sale queue-enabled event admitting 600 buyers a minute
(so every watcher's place changes every second; see domain.worth_pushing for which changes
a watcher is told of), joins the watchers, then opens one
server-streaming WatchQueue per buyer from two client processes (grpc.aio, 20 connections each),
``--open-rate`` new streams a second, and keeps them all open for ``--seconds``. Measures:

- updates delivered per second to the clients (every message after the first of each stream);
- queue_svc memory (RSS) and CPU with and without the streams, Envoy's RSS, Redis memory;
- how many streams were refused or broken (and why).

By default the streams go through the gateway (native gRPC with a bearer token each);
``--direct`` connects to the queue_svc port, to see the service without Envoy in the way.
Appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import time
import urllib.request

import grpc
import redis
from common import aio_channel, as_gateway
from queue_common import (
    BenchStack,
    append_results,
    bench_stack,
    cpu_seconds,
    machine,
    queue_event,
    rss_mb,
)
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from queue_svc.domain import MAX_SILENCE_SECONDS, NEAR_FRONT, SIGNIFICANT_MOVE
from ticketing_common.tls import TlsFiles

CLIENT_PROCESSES = 2
CHANNELS_PER_CLIENT = 20
RATE = 600


def watch_worker(
    args: tuple[str, str, list[tuple[str, str]], float, float, float, TlsFiles | None],
) -> dict[str, object]:
    """One client process: a stream per credential, opened ``spacing`` seconds apart from
    ``start_at``, all kept open until ``stop_at`` (wall clock); ``tls`` the client certificate
    towards the queue_svc port (None: the gateway)."""
    target, event_id, credentials, start_at, spacing, stop_at, tls = args

    async def run() -> dict[str, object]:
        options = [("grpc.use_local_subchannel_pool", 1)]
        channels = [aio_channel(target, tls, options) for _ in range(CHANNELS_PER_CLIENT)]
        stubs = [queue_pb2_grpc.QueueServiceStub(c) for c in channels]
        request = queue_pb2.WatchQueueRequest(event_id=event_id)
        firsts, updates, admitted = 0, 0, 0
        errors: collections.Counter[str] = collections.Counter()
        per_second: collections.Counter[int] = collections.Counter()

        async def watch(i: int, credential: tuple[str, str]) -> None:
            nonlocal firsts, updates, admitted
            await asyncio.sleep(max(0.0, start_at + i * spacing - time.time()))
            call = stubs[i % len(stubs)].WatchQueue(request, metadata=(credential,))
            first = True
            try:
                async for entry in call:
                    if first:
                        firsts += 1
                        first = False
                    else:
                        updates += 1
                        per_second[int(time.time())] += 1
                    if entry.state == queue_pb2.QUEUE_ENTRY_STATE_ADMITTED:
                        admitted += 1
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    errors[f"{exc.code().name}: {(exc.details() or '')[:60]}"] += 1

        tasks = [asyncio.create_task(watch(i, c)) for i, c in enumerate(credentials)]
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close(grace=None)
        return {
            "firsts": firsts,
            "updates": updates,
            "admitted": admitted,
            "errors": dict(errors),
            "per_second": dict(per_second),
        }

    return asyncio.run(run())


async def join_all(
    target: str, event_id: str, credentials: list[tuple[str, str]], tls: TlsFiles | None
) -> int:
    joined = 0
    async with aio_channel(target, tls) as channel:
        stub = queue_pb2_grpc.QueueServiceStub(channel)
        request = queue_pb2.JoinQueueRequest(event_id=event_id)
        pending = iter(credentials)

        async def loop() -> None:
            nonlocal joined
            for credential in pending:
                await stub.JoinQueue(request, metadata=(credential,))
                joined += 1

        await asyncio.gather(*(loop() for _ in range(64)))
    return joined


ENVOY_STATS = (
    "upstream_rq_active",
    "upstream_rq_pending_active",
    "upstream_rq_pending_overflow",
    "upstream_cx_active",
)


def envoy_stats(stack: BenchStack) -> str:
    """A few counters of Envoy's ``queue`` cluster (its admin interface)."""
    url = f"http://127.0.0.1:{stack.ports.of('envoy-admin')}/stats?filter=^cluster%5C.queue%5C."
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    found = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return ", ".join(f"{k} {found.get(f'cluster.queue.{k}', '?')}" for k in ENVOY_STATS)


def measure(stack: BenchStack, args: argparse.Namespace) -> dict[str, object]:
    event_id = queue_event(stack, rate=RATE)
    users = [f"watcher-{i:06d}" for i in range(args.watchers)]
    tls: TlsFiles | None = None
    if args.direct:
        # As the gateway reaches the port: its certificate, so the identity header counts.
        target, tls = f"127.0.0.1:{stack.ports.of('queue')}", as_gateway(stack.state)
        credentials = [("x-ticketing-user", u) for u in users]
    else:
        target = stack.gateway
        credentials = [("authorization", f"Bearer {t}") for t in stack.tokens(users)]
    started = time.monotonic()
    joined = asyncio.run(join_all(target, event_id, credentials, tls))
    join_seconds = time.monotonic() - started

    pids = {name: stack.pid(name) for name in ("queue", "envoy", "redis")}
    rss_before = {name: rss_mb(pid) for name, pid in pids.items()}
    ramp = args.watchers / args.open_rate
    start_at = time.time() + 3.0
    steady_from = start_at + ramp + 5.0
    stop_at = steady_from + args.seconds
    slices = [credentials[i::CLIENT_PROCESSES] for i in range(CLIENT_PROCESSES)]
    with multiprocessing.get_context("spawn").Pool(CLIENT_PROCESSES) as pool:
        pending = pool.map_async(
            watch_worker,
            [
                (target, event_id, s, start_at, CLIENT_PROCESSES / args.open_rate, stop_at, tls)
                for s in slices
            ],
        )
        time.sleep(max(0.0, steady_from - time.time()))
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        rss_streams = {name: rss_mb(pid) for name, pid in pids.items()}
        envoy = "" if args.direct else envoy_stats(stack)
        time.sleep(max(0.0, stop_at - time.time() - 1))
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        rss_end = {name: rss_mb(pid) for name, pid in pids.items()}
        steady = time.time() - steady_from
        results = pending.get(timeout=120)

    per_second: collections.Counter[int] = collections.Counter()
    for r in results:
        per_second.update({int(k): v for k, v in r["per_second"].items()})
    window = [per_second[s] for s in range(int(steady_from) + 1, int(stop_at) - 1)]
    errors: collections.Counter[str] = collections.Counter()
    for r in results:
        errors.update(r["errors"])
    redis_used = redis.Redis(port=stack.ports.of("redis")).info("memory")["used_memory"]
    return {
        "joined": joined,
        "join_seconds": join_seconds,
        "streams": sum(r["firsts"] for r in results),
        "updates": sum(r["updates"] for r in results),
        "admitted": sum(r["admitted"] for r in results),
        "updates_per_second": sum(window) / max(1, len(window)),
        "errors": dict(errors),
        "rss_before": rss_before,
        "rss_streams": rss_streams,
        "rss_end": rss_end,
        "cpu": {n: (cpu_after[n] - cpu_before[n]) / steady for n in pids},
        "redis_used_mb": redis_used / 1e6,
        "envoy": envoy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--direct", action="store_true")
    parser.add_argument("--open-rate", type=float, default=800, help="new streams per second")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    with bench_stack(start=26000) as stack:
        result = measure(stack, args)
    report(result, args)


def report(r: dict, args: argparse.Namespace) -> None:
    path = "the queue_svc port (no Envoy)" if args.direct else "the gateway (native gRPC)"
    command = (
        f"bench/queue_watchers.py --watchers {args.watchers} --seconds {args.seconds:g} "
        f"--open-rate {args.open_rate:g}"
    )
    command += " --direct" if args.direct else ""
    per_stream_kb = (
        (r["rss_streams"]["queue"] - r["rss_before"]["queue"]) * 1e3 / max(1, r["streams"])
    )
    lines = [
        f"{args.watchers:,} buyers joined ({r['joined'] / r['join_seconds']:,.0f} joins/s), then "
        f"each opened a WatchQueue stream through {path} from {CLIENT_PROCESSES} client "
        f"processes, {args.open_rate:g} new streams a second. The queue admits {RATE}/min, so "
        f"every place changes every second; a watcher hears of it at once within the first "
        f"{NEAR_FRONT} places, further back on a {SIGNIFICANT_MOVE:.0%} move or every "
        f"{MAX_SILENCE_SECONDS:g} s. One queue_svc process; everything on one {machine()}.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| streams opened (first message received) | {r['streams']:,} |",
        f"| updates delivered per second, steady state | {r['updates_per_second']:,.0f} |",
        f"| updates delivered in total | {r['updates']:,} |",
        f"| admissions delivered to watchers | {r['admitted']:,} |",
        f"| queue_svc RSS: idle / with the streams | {r['rss_before']['queue']:,.0f} / "
        f"{r['rss_streams']['queue']:,.0f} MB |",
        f"| queue_svc memory per stream | {per_stream_kb:,.1f} KB |",
        f"| Envoy RSS: idle / with the streams | {r['rss_before']['envoy']:,.0f} / "
        f"{r['rss_streams']['envoy']:,.0f} MB |",
        f"| CPU (cores) while streaming: queue_svc / Envoy / Redis | {r['cpu']['queue']:.2f} / "
        f"{r['cpu']['envoy']:.2f} / {r['cpu']['redis']:.2f} |",
        f"| Redis used_memory | {r['redis_used_mb']:,.1f} MB |",
    ]
    if r["errors"]:
        lines += [
            "",
            "Streams that failed: " + "; ".join(f"{v:,} x {k}" for k, v in r["errors"].items()),
        ]
    if r["envoy"]:
        lines += ["", f"Envoy's queue cluster at the steady point: {r['envoy']}."]
    append_results("Queue: concurrent watchers", command, lines, args.no_record)


if __name__ == "__main__":
    main()
