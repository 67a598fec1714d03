"""Benchmark: the CDC worker, from COMMIT in Postgres to visible in search.

    .venv/bin/python bench/cdc_lag.py [--events 10000] [--changes 200] [--burst 10000]

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports; commits are
synchronous, as the stack's Postgres is configured), loads ``--events`` events, then measures:

1. **Single changes**: ``--changes`` event renames, one at a time, each timed from the moment
   COMMIT is sent until a search on the engine finds the new name (polled every half
   millisecond): p50, p99, max; and for reference the engine's own latency for the same kind
   of one-document write.
2. **Backfill**: the worker's backfill code (``PgCatalog.all_documents`` into
   ``EngineIndex.load``, what a rebuild runs) for all events into a fresh index, against the
   engine's own bulk rate for the same documents (pre-serialized, the same 1,000 per request,
   sent back to back over one keep-alive connection); twice, alternating. Then the running
   worker's own rebuild after the engine is killed and restarted empty (from its log).
3. **Burst**: an event with ``--burst`` tickets, each held by its own single-row transaction
   from 8 writers at once: writer rate, time until search shows the event sold out, the lag of
   the last commit, and how many document writes the worker needed (its status counters).

Prints the figures and appends them to bench/RESULTS.md. The engine is the embedded
OpenSearch-compatible stand-in: absolute figures are its own, not a real cluster's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import re
import signal
import threading
import time
import uuid
from pathlib import Path

import psycopg
from search_common import (
    append_results,
    engine,
    load_catalog,
    machine,
    own_stack,
    percentile,
    wait_indexed,
)

from cdc_worker.adapters.index import EngineIndex, _index_operations
from cdc_worker.adapters.postgres import PgCatalog
from search_svc.adapters.engine import connect
from search_svc.documents import MAPPINGS, SETTINGS

BULK = 1000
GOAL_RATIO = 1.5
GOAL_MS = 50.0


def single_changes(
    database_url: str, search_url: str, count: int
) -> tuple[list[float], list[float], list[float]]:
    """``count`` rounds of: one event renamed in Postgres, timed from COMMIT sent until a
    search finds the new name (the CDC worker's commit-to-searchable); then the engine's own
    one-document bulk write of another event's document, timed until the engine answered
    (write) and until a search finds it (write-to-searchable), both the same way. Interleaved,
    so the shared machine's noise falls on both sides alike."""
    found = engine(
        search_url,
        "/events/_search",
        {"size": 2 * count, "version": True, "query": {"match_all": {}}},
    )["hits"]["hits"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        ids = [r[0] for r in conn.execute("SELECT id::text FROM events LIMIT %s", (count,))]
        # The engine's own writes go to other events than the renamed ones (no version race).
        others = [hit for hit in found if hit["_id"] not in set(ids)] or found
        host, port = search_url.removeprefix("http://").split(":")
        poll = http.client.HTTPConnection(host, int(port), timeout=10)
        write = http.client.HTTPConnection(host, int(port), timeout=60)
        lags, writes, visible = [], [], []
        for n, event_id in enumerate(ids):
            name = f"Renamed {uuid.uuid4().hex}"
            conn.execute("BEGIN")
            conn.execute("UPDATE events SET name = %s WHERE id = %s", (name, event_id))
            began = time.perf_counter()
            conn.execute("COMMIT")
            _until_found(poll, event_id, name)
            lags.append(time.perf_counter() - began)
            time.sleep(0.02)
            hit = others[n % len(others)]
            source = dict(hit["_source"], name=f"Engine {uuid.uuid4().hex}")
            # The version is kept (external_gte): the worker's later writes still win.
            meta = {"_id": hit["_id"], "version": hit["_version"], "version_type": "external_gte"}
            body = (json.dumps({"index": meta}) + "\n" + json.dumps(source) + "\n").encode()
            began = time.perf_counter()
            write.request(
                "POST", "/events/_bulk", body=body, headers={"content-type": "application/x-ndjson"}
            )
            write.getresponse().read()
            writes.append(time.perf_counter() - began)
            _until_found(poll, hit["_id"], source["name"])
            visible.append(time.perf_counter() - began)
            time.sleep(0.02)
        return lags, writes, visible


def _until_found(poll: http.client.HTTPConnection, event_id: str, name: str) -> None:
    query = json.dumps(
        {"size": 1, "_source": ["name"], "query": {"term": {"event_id": event_id}}}
    ).encode()
    while True:
        poll.request("POST", "/events/_search", body=query, headers=_JSON)
        hits = json.loads(poll.getresponse().read())["hits"]["hits"]
        if hits and hits[0]["_source"]["name"] == name:
            return
        time.sleep(0.0005)  # poll often, without keeping the engine busy


_JSON = {"content-type": "application/json"}


def backfill_rate(database_url: str, search_url: str) -> tuple[int, float]:
    """The worker's rebuild path into a fresh index: (documents, seconds)."""
    client = connect(search_url, request_timeout=60)
    index = EngineIndex(client, alias="bench-backfill", bulk_size=BULK)
    catalog = PgCatalog(database_url, slot="bench")
    try:
        began = time.perf_counter()
        target = index.new_index()
        count = 0
        for chunk in catalog.all_documents(BULK):
            index.load(target, [item.document for item in chunk], 1)
            count += len(chunk)
        index.publish(target)
        return count, time.perf_counter() - began
    finally:
        catalog.close()
        for name in client.indices("bench-backfill-v-*"):
            client.delete_index(name)
        client.close()


def engine_bulk_rate(database_url: str, search_url: str) -> tuple[int, float]:
    """The same documents, pre-serialized, bulk-indexed back to back: (documents, seconds)."""
    catalog = PgCatalog(database_url, slot="bench")
    bodies = []
    count = 0
    try:
        for chunk in catalog.all_documents(BULK):
            ops = _index_operations([item.document for item in chunk], 1)
            bodies.append("".join(json.dumps(line) + "\n" for op in ops for line in op).encode())
            count += len(chunk)
    finally:
        catalog.close()
    engine(search_url, "/bench-bulk", {"settings": SETTINGS, "mappings": MAPPINGS}, "PUT")
    host, port = search_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    began = time.perf_counter()
    for body in bodies:
        conn.request(
            "POST", "/bench-bulk/_bulk", body=body, headers={"content-type": "application/x-ndjson"}
        )
        reply = json.loads(conn.getresponse().read())
        assert not reply["errors"], str(reply)[:300]
    seconds = time.perf_counter() - began
    engine(search_url, "/bench-bulk", method="DELETE")
    return count, seconds


def worker_rebuild(state: Path, search_url: str, events: int) -> tuple[int, float] | None:
    """Kill the engine; the supervisor restarts it empty and the worker rebuilds the index."""
    snapshot = json.loads((state / "run" / "stack.json").read_text())
    pid = next(c["pid"] for c in snapshot["components"] if c["name"] == "search-engine")
    log = state / "logs" / "cdc-worker.log"
    offset = log.stat().st_size
    os.kill(pid, signal.SIGKILL)
    wait_indexed(search_url, events, timeout=300)
    found = re.findall(
        r"search index rebuilt: (\d+) documents in ([\d.]+) s", log.read_text()[offset:]
    )
    if not found:
        return None
    return int(found[-1][0]), float(found[-1][1])


def worker_counters(state: Path) -> dict[str, int]:
    lines = [
        line
        for line in (state / "logs" / "cdc-worker.log").read_text().splitlines()
        if '"replication status' in line
    ]
    if not lines:
        return {}
    entry = json.loads(lines[-1])
    return {k: int(entry.get(k) or 0) for k in ("transactions", "documents", "batches")}


def burst(database_url: str, search_url: str, state: Path, tickets: int) -> dict[str, float]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        venue, performer = conn.execute(
            "SELECT v.id, p.id FROM venues v, performers p LIMIT 1"
        ).fetchone()
        event_id = conn.execute(
            "INSERT INTO events (venue_id, performer_id, name, type, start_time, end_time,"
            " on_sale_time, currency) VALUES (%s, %s, 'Burst Night', 'concert',"
            " now() + interval '5000 days', now() + interval '5000 days 3 hours', now(), 'EUR')"
            " RETURNING id::text",
            (venue, performer),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO tickets (event_id, section, row_label, seat_label, price_minor, currency)"
            " SELECT %s, 'A', (g / 100)::text, (g %% 100)::text, 5000, 'EUR'"
            " FROM generate_series(0, %s - 1) g",
            (event_id, tickets),
        )
        ids = [
            r[0] for r in conn.execute("SELECT id FROM tickets WHERE event_id = %s", (event_id,))
        ]
    query = json.dumps({"query": {"term": {"event_id": event_id}}}).encode()
    host, port = search_url.removeprefix("http://").split(":")
    poll = http.client.HTTPConnection(host, int(port), timeout=10)

    def available() -> int | None:
        poll.request("POST", "/events/_search", body=query, headers=_JSON)
        hits = json.loads(poll.getresponse().read())["hits"]["hits"]
        return hits[0]["_source"]["available_tickets"] if hits else None

    while available() != tickets:
        time.sleep(0.05)
    time.sleep(2.5)  # a fresh status line with the counters before the burst
    before = worker_counters(state)
    writers = 8
    commits: list[float] = []
    first = [0.0]
    lock = threading.Lock()

    def writer(n: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SET synchronous_commit = on")
            for ticket in ids[n::writers]:
                conn.execute(
                    "UPDATE tickets SET status = 'held', holder_user_id = 'burst',"
                    " hold_expire_time = now() + interval '1 hour' WHERE id = %s",
                    (ticket,),
                )
                with lock:
                    commits.append(time.perf_counter())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    first[0] = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    last = max(commits)
    while available() != 0:
        time.sleep(0.001)
    visible = time.perf_counter()
    time.sleep(2.5)
    after = worker_counters(state)
    return {
        "tickets": tickets,
        "writer_rate": tickets / (last - first[0]),
        "throughput": tickets / (visible - first[0]),
        "last_lag_ms": (visible - last) * 1000,
        "documents": after.get("documents", 0) - before.get("documents", 0),
        "batches": after.get("batches", 0) - before.get("batches", 0),
        "transactions": after.get("transactions", 0) - before.get("transactions", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument(
        "--lag-only", action="store_true", help="only the single changes (no backfill, burst)"
    )
    args = parser.parse_args()
    rates: list[tuple[float, float]] = []
    rebuild = sale = None
    with own_stack({"TICKETING_CDC_STATUS_INTERVAL_SECONDS": "1"}) as (state, config):
        load_catalog(config.database_url, args.events)
        wait_indexed(config.search_url, args.events)
        lags, writes, visible = single_changes(config.database_url, config.search_url, args.changes)
        lag, own, seen = ({p: percentile(v, p) * 1000 for p in (50, 99, 100)}
                          for v in (lags, writes, visible))  # fmt: skip
        print(f"single changes: p50 {lag[50]:.1f} ms, p99 {lag[99]:.1f} ms, max {lag[100]:.1f} ms")
        print(f"engine's own one-document write: p50 {own[50]:.1f} ms, p99 {own[99]:.1f} ms")
        print(f"engine's own write to searchable: p50 {seen[50]:.1f} ms, p99 {seen[99]:.1f} ms")
        if not args.lag_only:
            for _ in range(2):
                ours = backfill_rate(config.database_url, config.search_url)
                raw = engine_bulk_rate(config.database_url, config.search_url)
                rates.append((ours[0] / ours[1], raw[0] / raw[1]))
                print(
                    f"backfill {ours[0] / ours[1]:.0f} docs/s vs engine bulk {raw[0] / raw[1]:.0f}"
                )
            rebuild = worker_rebuild(state, config.search_url, args.events)
            if rebuild:
                print(f"worker rebuild after an engine restart: {rebuild[0]} in {rebuild[1]:.2f} s")
            sale = burst(config.database_url, config.search_url, state, args.burst)
            print(
                f"burst: {sale['tickets']} single-ticket commits at {sale['writer_rate']:.0f}/s;"
                f" sold out in search at {sale['throughput']:.0f} changes/s end to end,"
                f" {sale['last_lag_ms']:.1f} ms after the last commit;"
                f" {sale['documents']} document writes in {sale['batches']} batches"
            )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ratio, ratio_seen = lag[99] / own[99], lag[99] / seen[99]
    met = ratio <= GOAL_RATIO and lag[99] < GOAL_MS
    rows = (
        f"| single changes ({args.changes} renames, COMMIT sent -> found by a search) |"
        f" p50 **{lag[50]:.1f} ms**, p99 **{lag[99]:.1f} ms**, max {lag[100]:.1f} ms |\n"
        f"| the engine's own one-document bulk write ({args.changes}, interleaved with the"
        f" renames, until it answered) | p50 {own[50]:.1f} ms, p99 {own[99]:.1f} ms,"
        f" max {own[100]:.1f} ms |\n"
        f"| the same writes until a search finds them (write to searchable) |"
        f" p50 {seen[50]:.1f} ms, p99 {seen[99]:.1f} ms, max {seen[100]:.1f} ms |\n"
        f"| commit-to-searchable p99 / engine write p99 | **x{ratio:.2f}**"
        f" (vs the engine's write-to-searchable p99: x{ratio_seen:.2f}) |\n"
    )
    if rates:
        ours_best = max(r[0] for r in rates)
        raw_best = max(r[1] for r in rates)
        rows += (
            f"| backfill of {args.events:,} events (worker code: Postgres -> bulk) |"
            f" {', '.join(f'{r[0]:,.0f}' for r in rates)} docs/s |\n"
            f"| the engine's own bulk rate, same documents pre-serialized |"
            f" {', '.join(f'{r[1]:,.0f}' for r in rates)} docs/s |\n"
            f"| backfill vs engine (best of each) | **{ours_best / raw_best:.0%}** |\n"
        )
    if rebuild:
        rows += (
            f"| the running worker's rebuild after the engine restarted empty | {rebuild[0]:,}"
            f" documents in {rebuild[1]:.2f} s = {rebuild[0] / rebuild[1]:,.0f}/s |\n"
        )
    if sale:
        rows += (
            f"| burst: {sale['tickets']:,} single-ticket holds, 8 writers |"
            f" commits at {sale['writer_rate']:,.0f}/s; search shows the event sold out"
            f" {sale['last_lag_ms']:.0f} ms after the last commit ({sale['throughput']:,.0f}"
            f" changes/s end to end); {sale['documents']} document writes in {sale['batches']}"
            f" batches for {sale['transactions']:,} transactions |\n"
        )
    flags = " --lag-only" if args.lag_only else f" --burst {args.burst}"
    append_results(
        f"\n### CDC: commit to visible in search, {stamp}\n\n"
        f"`bench/cdc_lag.py --events {args.events} --changes {args.changes}{flags}`;"
        f" synchronous commit on; Postgres, the worker and the engine"
        f" share one {machine()} with the rest of the stack. The engine is the embedded"
        " OpenSearch-compatible stand-in.\n\n"
        "| measure | result |\n| --- | --- |\n"
        + rows
        + f"\nGoal (p99 at most x{GOAL_RATIO} the engine's write p99, under {GOAL_MS:.0f} ms):"
        f" **{'met' if met else 'not met'}** (x{ratio:.2f}, {lag[99]:.1f} ms).\n"
    )


if __name__ == "__main__":
    main()
