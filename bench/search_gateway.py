# ruff: noqa: S311 - random.Random picks a reproducible query mix on purpose.
"""Benchmark: SearchEvents through the gateway against the same queries sent straight to the
engine, at 16 concurrent clients.

    .venv/bin/python bench/search_gateway.py [--events 10000] [--duration 20] [--clients 16]

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports), loads
``--events`` events into Postgres (the CDC worker indexes them), then runs a fixed mix of 240
searches (exact and misspelled terms, city + type, date ranges, coordinates + radius sorted by
distance, term + city) for ``--duration`` seconds each way, alternating in 10 short slots:

- through the gateway: native gRPC to Envoy (JWT filter, router) -> search service -> engine;
- straight to the engine: the very request bodies the service sends for those searches
  (built with the same ``search_svc.request`` / ``search_svc.query`` code), over keep-alive HTTP.

Prints queries/s, p50 and p99 for each and the ratios, and appends them to bench/RESULTS.md.
The engine is the embedded OpenSearch-compatible stand-in: its absolute figures are its own,
not a real cluster's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from search_common import (
    Catalog,
    append_results,
    load_catalog,
    machine,
    own_stack,
    percentile,
    wait_indexed,
)
from ticketing.search.v1 import search_pb2, search_pb2_grpc

from search_svc.domain import Sort
from search_svc.query import search_body
from search_svc.request import parse_search, search_page_size

# Short alternating slots, so that both paths see the same background load on a shared machine.
ROUNDS = 10
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SORTS = {None: search_pb2.SEARCH_SORT_UNSPECIFIED, Sort.DISTANCE: search_pb2.SEARCH_SORT_DISTANCE}


def misspell(word: str, rng: random.Random) -> str:
    """One typo after the first letter: a substitution, a deletion or a transposition."""
    if len(word) < 5:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("substitute", "delete", "transpose"))
    if kind == "substitute":
        return word[:i] + rng.choice("aeiourstn") + word[i + 1 :]
    if kind == "delete":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def query_mix(catalog: Catalog, count: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    words = sorted({w for name in catalog.performers for w in name.split() if len(w) > 3})
    queries: list[dict[str, Any]] = []
    for i in range(count):
        city, lat, lon = rng.choice(catalog.cities)
        day = catalog.first_day + dt.timedelta(days=rng.randrange(catalog.days))
        kind = i % 6
        if kind == 0:
            queries.append({"term": rng.choice(words)})
        elif kind == 1:
            queries.append({"term": misspell(rng.choice(words), rng)})
        elif kind == 2:
            queries.append({"location": city, "type": rng.choice(catalog.types)})
        elif kind == 3:
            queries.append({"location": city, "date": f"{day}/{day + dt.timedelta(days=30)}"})
        elif kind == 4:
            queries.append(
                {"location": f"{lat:.3f},{lon:.3f}", "radius_km": 25.0, "sort": Sort.DISTANCE}
            )
        else:
            queries.append({"term": rng.choice(words), "location": city})
    return queries


def engine_body(query: dict[str, Any], now: dt.datetime) -> bytes:
    parsed = parse_search(
        term=query.get("term", ""),
        location=query.get("location", ""),
        radius_km=query.get("radius_km", 0.0),
        type=query.get("type", ""),
        date=query.get("date", ""),
        include_past=False,
        sort=query.get("sort"),
    )
    size = search_page_size(0)
    return json.dumps(search_body(parsed, size=size + 1, now=now)).encode()


def grpc_request(query: dict[str, Any]) -> search_pb2.SearchEventsRequest:
    fields = {k: v for k, v in query.items() if k != "sort"}
    return search_pb2.SearchEventsRequest(**fields, sort=SORTS[query.get("sort")])


def run_clients(
    clients: int, duration: float, make_call: Callable[[int], Callable[[int], None]]
) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(n: int) -> None:
        call = make_call(n)
        start.wait()
        i = n * 7
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            try:
                call(i)
            except Exception:
                errors[n] += 1
            else:
                latencies[n].append(time.perf_counter() - began)
            i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + duration
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    return {
        "latencies": [x for per in latencies for x in per],
        "elapsed": elapsed,
        "errors": sum(errors),
    }


def stack_pids(state: Path) -> dict[str, list[int]]:
    """The pids of the components a search passes through (and their worker processes)."""
    snapshot = json.loads((state / "run" / "stack.json").read_text())
    pids = {c["name"]: c["pid"] for c in snapshot["components"] if c.get("pid")}
    found: dict[str, list[int]] = {}
    for name in ("envoy", "search", "search-engine"):
        root = pids[name]
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(stat[1]) == root:
                    children.append(int(entry.name))
        found[name] = [root, *children]
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(stat[11]) + int(stat[12])  # utime + stime
    return total / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()

    # A fuzzy query on 100,000 documents takes the stand-in engine a while under load.
    with own_stack({"TICKETING_SEARCH_TIMEOUT_SECONDS": "30"}) as (state, config):
        began = time.monotonic()
        catalog = load_catalog(config.database_url, args.events)
        loaded = time.monotonic() - began
        indexed = wait_indexed(config.search_url, args.events)
        print(f"{args.events:,} events loaded in {loaded:.1f} s, indexed {indexed:.1f} s later")
        queries = query_mix(catalog, 240)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        bodies = [engine_body(q, now) for q in queries]
        requests = [grpc_request(q) for q in queries]
        host, port = config.search_url.removeprefix("http://").split(":")

        def direct(n: int) -> Callable[[int], None]:
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            headers = {"content-type": "application/json"}

            def call(i: int) -> None:
                conn.request(
                    "POST", "/events/_search", body=bodies[i % len(bodies)], headers=headers
                )
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    raise RuntimeError(payload[:200])
                json.loads(payload)

            return call

        channel = grpc.insecure_channel(config.gateway)
        stub = search_pb2_grpc.SearchServiceStub(channel)

        def gateway(n: int) -> Callable[[int], None]:
            def call(i: int) -> None:
                stub.SearchEvents(requests[i % len(requests)], timeout=60)

            return call

        run_clients(args.clients, 3, direct)  # warm up both paths
        run_clients(args.clients, 3, gateway)
        runs: dict[str, list[dict[str, Any]]] = {"engine": [], "gateway": []}
        pids = stack_pids(state)
        cpu: dict[str, dict[str, float]] = {
            side: dict.fromkeys(pids, 0.0) for side in ("engine", "gateway")
        }
        for _ in range(ROUNDS):
            for side, make_call in (("engine", direct), ("gateway", gateway)):
                before = {name: cpu_seconds(p) for name, p in pids.items()}
                result = run_clients(args.clients, args.duration / ROUNDS, make_call)
                for name, p in pids.items():
                    cpu[side][name] += cpu_seconds(p) - before[name]
                runs[side].append(result)
                print(f"  {side:8} {len(result['latencies']) / result['elapsed']:7.1f} q/s")
        channel.close()

    summary = {side: _merge(results) for side, results in runs.items()}
    ratio_qps = summary["gateway"]["qps"] / summary["engine"]["qps"]
    ratio_p99 = summary["gateway"]["p99"] / summary["engine"]["p99"]
    for side in ("engine", "gateway"):
        s = summary[side]
        print(
            f"{side:8} {s['qps']:8.1f} q/s  p50 {s['p50']:7.1f} ms  p99 {s['p99']:7.1f} ms"
            f"  ({int(s['count'])} searches, {int(s['errors'])} errors)"
        )
    print(f"gateway/engine: throughput {ratio_qps:.0%}, p99 x{ratio_p99:.2f}")
    per_search = {
        side: {name: 1000 * secs / summary[side]["count"] for name, secs in cpu[side].items()}
        for side in cpu
    }
    for side, costs in per_search.items():
        print(
            f"CPU per search, {side} runs: "
            + ", ".join(f"{n} {ms:.1f} ms" for n, ms in costs.items())
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    e, g = summary["engine"], summary["gateway"]
    append_results(
        f"\n### Search through the gateway vs the engine, {args.events:,} events, {stamp}\n\n"
        f"`bench/search_gateway.py --events {args.events} --duration {args.duration:g}"
        f" --clients {args.clients}`; {args.clients} concurrent clients, the same 240 searches"
        " (exact and misspelled terms, city + type, date ranges, coordinates + radius by"
        f" distance, term + city) both ways, alternated in {ROUNDS} short slots. Clients,"
        f" Envoy, the search service and the engine share one {machine()}. The engine is the"
        " embedded"
        " OpenSearch-compatible stand-in: absolute figures are its own, not a real cluster's.\n\n"
        "| path | searches/s | p50 ms | p99 ms | errors |\n| --- | ---: | ---: | ---: | ---: |\n"
        f"| straight to the engine | {e['qps']:.1f} | {e['p50']:.1f} | {e['p99']:.1f} |"
        f" {int(e['errors'])} |\n"
        f"| gateway (gRPC) -> search service -> engine | {g['qps']:.1f} | {g['p50']:.1f} |"
        f" {g['p99']:.1f} | {int(g['errors'])} |\n\n"
        f"Gateway vs engine: **{ratio_qps:.0%} of the throughput, p99 x{ratio_p99:.2f}**"
        " (goal: at least 80%, at most x1.2).\n"
        "CPU per search (from /proc, robust to the machine's other load): straight to the"
        f" engine, engine {per_search['engine']['search-engine']:.1f} ms; through the gateway,"
        f" engine {per_search['gateway']['search-engine']:.1f} ms + search service"
        f" {per_search['gateway']['search']:.1f} ms + Envoy {per_search['gateway']['envoy']:.1f}"
        " ms.\n"
    )


def _merge(results: list[dict[str, Any]]) -> dict[str, float]:
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "qps": len(latencies) / sum(r["elapsed"] for r in results),
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "count": len(latencies),
        "errors": sum(r["errors"] for r in results),
    }


if __name__ == "__main__":
    main()
