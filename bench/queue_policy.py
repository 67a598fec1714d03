"""Benchmark: how the queue learns an event's policy, now that it asks the catalog.

    .venv/bin/python bench/queue_policy.py [--duration 5] [--concurrency 16]

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports), creates a
queue-enabled event, then for ``--duration`` seconds each, with ``--concurrency`` lookups in
flight from one asyncio process, measures policy lookups three ways:

- raw Postgres: the single-row SELECT the queue used to run on the events table (psycopg 3 pool,
  the building block the gRPC path replaced);
- the catalog over gRPC, uncached: ``queue_svc.adapters.catalog.CatalogPolicies`` straight to
  the catalog's port (``GetEvent``, BASIC view, from the catalog's Redis page cache);
- what the queue runs: ``queue_svc.policy_cache.PolicyCache`` in front of it (2 s TTL).

Prints lookups/s, p50 and p99 and each path's ratio to raw Postgres; appends to
bench/RESULTS.md (``--no-record``: print only).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from common import as_gateway
from psycopg_pool import AsyncConnectionPool
from queue_common import append_results, bench_stack, machine, queue_event

from queue_svc.adapters.catalog import CatalogPolicies
from queue_svc.policy_cache import PolicyCache
from ticketing_common.tls import TlsFiles

_OLD_SQL = """
    SELECT queue_enabled, queue_admission_rate_per_minute, queue_max_active,
           queue_admission_ttl_seconds, on_sale_time, end_time
    FROM events WHERE id = %s
"""


async def drive(
    lookup: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop:
            started = time.perf_counter()
            await lookup()
            latencies.append(time.perf_counter() - started)

    for _ in range(50):  # warm up: connections, the catalog's page in Redis
        await lookup()
    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "n": float(len(latencies)),
    }


async def measure(
    database_url: str, catalog: str, tls: TlsFiles, event_id: str, args: argparse.Namespace
):
    results: dict[str, dict[str, float]] = {}
    pool = AsyncConnectionPool(database_url, min_size=4, max_size=args.concurrency, open=False)
    await pool.open(wait=True)

    async def raw() -> object:
        async with pool.connection() as conn:
            cur = await conn.execute(_OLD_SQL, (event_id,))
            return await cur.fetchone()

    results["raw"] = await drive(raw, args.concurrency, args.duration)
    await pool.close()
    client = CatalogPolicies(catalog, tls, timeout_seconds=5)
    results["grpc"] = await drive(lambda: client.get(event_id), args.concurrency, args.duration)
    cache = PolicyCache(client)
    results["cached"] = await drive(lambda: cache.get(event_id), args.concurrency, args.duration)
    await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    with bench_stack(start=26000) as stack:
        event_id = queue_event(stack)
        catalog = f"127.0.0.1:{stack.ports.of('catalog')}"
        results = asyncio.run(
            measure(stack.config.database_url, catalog, as_gateway(stack.state), event_id, args)
        )
    raw = results["raw"]["rps"]
    lines = [
        f"One asyncio client process, {args.concurrency} lookups in flight, {args.duration:g} s "
        f"per path; client, catalog, Redis and Postgres on one {machine()}.",
        "",
        "| path | lookups/s | p50 ms | p99 ms | vs raw Postgres |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in (
        ("raw", "raw Postgres: the old SELECT on events (the building block)"),
        ("grpc", "catalog over gRPC, uncached (`CatalogPolicies`, GetEvent BASIC)"),
        ("cached", "what the queue runs (`PolicyCache`, 2 s TTL, over the gRPC client)"),
    ):
        r = results[key]
        lines.append(
            f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {r['rps'] / raw:.2f}x |"
        )
    append_results(
        "Queue policy lookups: catalog over gRPC vs the old SQL",
        f"bench/queue_policy.py --duration {args.duration:g} --concurrency {args.concurrency}",
        lines,
        dry_run=args.no_record,
    )


if __name__ == "__main__":
    main()
