"""Benchmark: what WatchAvailability's NOTIFY trigger (migration 0011) costs the hold path.

    .venv/bin/python bench/availability_notify_cost.py [--holds 500] [--writers 4] [--dry-run]

Starts a stack of its own (its catalog LISTENs, as in production), creates an on-sale event of
2,000 seats and runs rounds of single-seat holds through ``hold_tickets`` (the statement
booking's ReserveTicket runs, one transaction each, a different buyer each) from ``--writers``
connections: alternately with the trigger on and with it disabled (``ALTER TABLE tickets
DISABLE TRIGGER``), ``--pairs`` times each, the seats released between rounds with the trigger off.
Prints holds/s and p50/p99 of one hold per mode, and the ratio; restores the trigger.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from queue_common import BenchStack, append_results, bench_stack, machine
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from tests.helpers import make_event, make_venue

TRIGGER = "tickets_notify_availability"
HOLD = "SELECT outcome FROM hold_tickets(%s, ARRAY[%s]::uuid[], interval '10 minutes', NULL)"


def event_tickets(stack: BenchStack) -> list[str]:
    metadata = stack.operator()
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, metadata, sections=4, rows=20, seats=25)
        event = make_event(catalog, metadata, venue.id, days_ahead=1750)
        page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return [t.id for t in page.tickets]


def set_trigger(url: str, on: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE tickets {'ENABLE' if on else 'DISABLE'} TRIGGER {TRIGGER}")


def release(url: str, tickets: list[str]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE tickets SET status = 'available', holder_user_id = NULL,"
            " hold_expire_time = NULL WHERE id = ANY(%s::uuid[])",
            (tickets,),
        )


def round_of_holds(
    url: str, tickets: list[str], writers: int, tag: str
) -> tuple[float, list[float]]:
    """Every ticket held once, by a buyer of its own; returns holds/s and each hold's time."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def writer(share: list[str], w: int) -> None:
        mine: list[float] = []
        with psycopg.connect(url) as conn:
            for i, ticket_id in enumerate(share):
                t0 = time.perf_counter()
                (outcome,) = conn.execute(HOLD, (f"{tag}-{w}-{i}", ticket_id)).fetchone()  # type: ignore[misc]
                conn.commit()
                mine.append(time.perf_counter() - t0)
                if outcome != "HELD":
                    failures.append(outcome)
        with lock:
            latencies.extend(mine)

    threads = [
        threading.Thread(target=writer, args=(tickets[w::writers], w)) for w in range(writers)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    if failures:
        raise SystemExit(f"holds refused: {failures[:5]}")
    return len(latencies) / took, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--holds", type=int, default=1000, help="holds per round")
    parser.add_argument("--pairs", type=int, default=3, help="rounds with and without")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    lines = [
        f"On a {machine()}; {args.writers} writers, {args.holds} holds per round,"
        f" {args.pairs} rounds with the trigger and {args.pairs} without, alternating.",
        "",
    ]
    with bench_stack() as stack:
        url = stack.config.database_url
        tickets = event_tickets(stack)[: args.holds]
        rates: dict[bool, list[float]] = {True: [], False: []}
        times: dict[bool, list[float]] = {True: [], False: []}
        try:
            for n, on in enumerate([True, False] * args.pairs):
                set_trigger(url, on)
                rate, latencies = round_of_holds(url, tickets, args.writers, f"r{n}")
                rates[on].append(rate)
                times[on].extend(latencies)
                set_trigger(url, False)
                release(url, tickets)
        finally:
            set_trigger(url, True)
    for on in (True, False):
        ordered = sorted(times[on])
        lines.append(
            f"- trigger {'on ' if on else 'off'}: {statistics.mean(rates[on]):,.0f} holds/s"
            f" (rounds {', '.join(f'{r:,.0f}' for r in rates[on])}); one hold p50"
            f" {ordered[len(ordered) // 2] * 1000:.2f} ms, p99"
            f" {ordered[int(len(ordered) * 0.99)] * 1000:.2f} ms"
        )
    ratio = statistics.mean(rates[True]) / statistics.mean(rates[False])
    lines.append(f"- with the trigger the hold path keeps {ratio:.0%} of its rate without it")
    command = " ".join(["python bench/availability_notify_cost.py", *sys.argv[1:]])
    append_results(
        "WatchAvailability's NOTIFY trigger on the hold path", command, lines, args.dry_run
    )


if __name__ == "__main__":
    main()
