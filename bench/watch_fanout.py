"""Benchmark: WatchAvailability fan-out, N watchers of one event in one catalog process.

    .venv/bin/python bench/watch_fanout.py [--watchers 1000,10000] [--changes 20] [--gateway]

Starts a stack of its own (one catalog process), creates an on-sale event of 2,000 seats,
then for each N: opens N WatchAvailability streams from two client processes (grpc.aio, 20
connections each; straight to the catalog's port, or through Envoy with ``--gateway``), waits
for every snapshot, and commits ``--changes`` holds one at a time, two a second (each an
UPDATE of one ticket, as booking's hold makes it). Measures:

- change latency: from just before the COMMIT to the change's arrival at each watcher,
  p50/p99 over every (watcher, change) pair;
- the raw building block in the same run: the same commits' latency to one plain psycopg
  LISTEN connection in this process (what the catalog's own feed sees), and the ratio;
- messages per second delivered to the watchers while the changes run;
- catalog memory per watcher: (RSS with the N streams open - RSS before) / N;
- streams that failed to open or broke.

Appends the figures to bench/RESULTS.md (``--dry-run`` only prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import select
import statistics
import sys
import time
from pathlib import Path

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from queue_common import (
    BenchStack,
    append_results,
    bench_stack,
    cpu_seconds,
    machine,
    rss_mb,
    wait_until,
)
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from tests.helpers import make_event, make_venue

CLIENT_PROCESSES = 2
CHANNELS_PER_CLIENT = 20
CHANGE_SPACING = 0.5  # seconds between two commits: above the 0.25 s coalescing window


def watch_worker(args: tuple[str, str, int, float, float]) -> dict[str, object]:
    """One client process: ``count`` streams; records when each change arrived at each."""
    target, event_id, count, open_by, stop_at = args

    async def run() -> dict[str, object]:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]
        channels = [
            grpc.aio.insecure_channel(target, options=options) for _ in range(CHANNELS_PER_CLIENT)
        ]
        stubs = [catalog_pb2_grpc.CatalogServiceStub(c) for c in channels]
        request = catalog_pb2.WatchAvailabilityRequest(event_id=event_id)
        arrivals: dict[str, list[float]] = {}
        snapshots = 0
        messages = 0
        errors: dict[str, int] = {}

        async def watch(i: int) -> None:
            nonlocal snapshots, messages
            await asyncio.sleep(open_by * i / max(1, count))
            try:
                async for update in stubs[i % len(stubs)].WatchAvailability(request):
                    now = time.time()
                    if update.HasField("snapshot"):
                        snapshots += 1
                        continue
                    messages += 1
                    for change in update.changes:
                        arrivals.setdefault(change.ticket_id, []).append(now)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    key = f"{exc.code().name}: {(exc.details() or '')[:60]}"
                    errors[key] = errors.get(key, 0) + 1

        tasks = [asyncio.create_task(watch(i)) for i in range(count)]
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close(grace=None)
        return {
            "arrivals": arrivals,
            "snapshots": snapshots,
            "messages": messages,
            "errors": errors,
        }

    return asyncio.run(run())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def catalog_watchers(stack: BenchStack) -> float:
    import urllib.request

    url = f"http://127.0.0.1:{stack.ports.of('catalog-metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("ticketing_availability_watchers"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_changes(
    database_url: str, tickets: list[str], changes: int
) -> tuple[dict[str, float], list[float]]:
    """Commit ``changes`` holds one by one; returns each ticket's time just before its COMMIT
    and the latencies seen by a plain LISTEN connection (the raw building block)."""
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute("LISTEN ticket_availability")
    raw: list[float] = []
    started: dict[str, float] = {}
    with psycopg.connect(database_url) as writer:
        for ticket_id in tickets[:changes]:
            writer.execute(
                "UPDATE tickets SET status = 'held', holder_user_id = 'bench',"
                " hold_expire_time = now() + interval '10 minutes' WHERE id = %s",
                (ticket_id,),
            )
            t0 = time.time()
            writer.commit()
            started[ticket_id] = t0
            deadline = time.monotonic() + 5
            got = False
            while not got and time.monotonic() < deadline:
                select.select([listener.fileno()], [], [], 0.5)
                for note in listener.notifies(timeout=0):
                    if ticket_id in note.payload:
                        raw.append(time.time() - t0)
                        got = True
            time.sleep(CHANGE_SPACING)
    listener.close()
    return started, raw


def measure(stack: BenchStack, args: argparse.Namespace, n: int, day: int) -> list[str]:
    metadata = stack.operator()
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, metadata, sections=4, rows=20, seats=25)
        event = make_event(catalog, metadata, venue.id, days_ahead=day)
        page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    tickets = [t.id for t in page.tickets]
    target = stack.gateway if args.gateway else f"127.0.0.1:{stack.ports.of('catalog')}"
    pid = stack.pid("catalog")
    rss_before = rss_mb(pid)
    cpu_before = cpu_seconds(pid)
    open_by = max(2.0, n / 2000)
    stop_at = time.time() + open_by + 30 + args.changes * (CHANGE_SPACING + 0.05) + 10
    per_client = [
        n // CLIENT_PROCESSES + (i < n % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)
    ]
    with multiprocessing.Pool(CLIENT_PROCESSES) as pool:
        pending = pool.map_async(
            watch_worker, [(target, event.id, c, open_by, stop_at) for c in per_client]
        )
        opened = wait_until(lambda: catalog_watchers(stack) >= n, timeout=open_by + 30)
        time.sleep(1.0)  # the last snapshots on their way
        rss_open = rss_mb(pid)
        changes_started = time.time()
        started, raw = run_changes(stack.config.database_url, tickets, args.changes)
        changes_took = time.time() - changes_started
        cpu_after = cpu_seconds(pid)
        results = pending.get(timeout=stop_at - time.time() + 60)
    latencies: list[float] = []
    messages = sum(int(r["messages"]) for r in results)  # type: ignore[call-overload]
    snapshots = sum(int(r["snapshots"]) for r in results)  # type: ignore[call-overload]
    errors: dict[str, int] = {}
    missing = 0
    for r in results:
        arrivals: dict[str, list[float]] = r["arrivals"]  # type: ignore[assignment]
        for ticket_id, t0 in started.items():
            seen = arrivals.get(ticket_id, [])
            latencies.extend(t - t0 for t in seen)
        for k, v in r["errors"].items():  # type: ignore[attr-defined]
            errors[k] = errors.get(k, 0) + v
    expected = len(started) * n
    missing = expected - len(latencies)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    raw_p50, raw_p99 = statistics.median(raw), percentile(raw, 0.99)
    via = "through Envoy" if args.gateway else "straight to the catalog"
    return [
        f"- **{n:,} watchers** ({via}; all open: {opened}, snapshots {snapshots:,}):"
        f" change latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over"
        f" {len(latencies):,} deliveries ({missing:,} missing); raw LISTEN p50"
        f" {raw_p50 * 1000:.1f} ms, p99 {raw_p99 * 1000:.1f} ms (fan-out p50 / raw p50 ="
        f" {p50 / raw_p50:.0f}x);"
        f" {messages / changes_took:,.0f} messages/s to watchers ({messages:,} in"
        f" {changes_took:.1f} s); catalog RSS {rss_before:.0f} -> {rss_open:.0f} MB ="
        f" {(rss_open - rss_before) * 1024 / n:.1f} KiB per watcher; catalog CPU"
        f" {cpu_after - cpu_before:.1f} s; errors {errors or 'none'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", default="1000,10000")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--gateway", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    counts = [int(x) for x in args.watchers.split(",")]
    header = [f"On a {machine()}; one catalog process, an event of 2,000 seats, changes"]
    header[0] += f" committed {1 / CHANGE_SPACING:.0f}/s, {args.changes} per run."
    lines = [*header, ""]
    with bench_stack() as stack:
        for i, n in enumerate(counts):
            lines += measure(stack, args, n, day=1700 + 3 * i)
    command = " ".join(["python bench/watch_fanout.py", *sys.argv[1:]])
    append_results("WatchAvailability fan-out", command, lines, dry_run=args.dry_run)


if __name__ == "__main__":
    main()
