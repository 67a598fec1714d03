"""Benchmark: what the operator dashboard's refresh costs, through the gateway's operator-only
route against straight to Prometheus (the raw building block), in one run.

    .venv/bin/python bench/dashboard_queries.py [--duration 8] [--operators 1 8]

Starts a stack of its own (`ticketing up --detach --demo-data small` on free ports), lets its
Prometheus scrape for a while, then plays the web client's refresh (web/src/views/dashboard.ts:
the same range queries over the last five minutes at a 2 s step, and the same instant queries,
all at once as the page sends them) back to back for ``--duration`` seconds per run, with 1 and
8 operators at once, each path in turn:

- direct: to Prometheus's own /api/v1/query and /api/v1/query_range;
- gateway: /operator/metrics/api/v1/... with an operator's JWT (verified, the role checked by
  the rbac filter, the path rewritten, the answer compressed when asked).

The per-user read limit is lifted on this stack (back-to-back refreshes are far above what a
person's page asks: one refresh every 2 s). Prints refreshes/s, queries/s, p50 and p99 of a
whole refresh, the ratio to direct, checks that every answer was 200 with Prometheus's JSON,
and appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from common import free_layout

from deploy.stack import gateway
from deploy.stack.keys import mint_token
from deploy.stack.state import StateDir

ROOT = Path(__file__).resolve().parents[1]

TICKETING = Path(sys.executable).parent / "ticketing"
RESULTS = ROOT / "bench" / "RESULTS.md"
EVENT = "3038521a-4098-53b8-a8fa-76a0ca81e121"  # the demo's hot sale
BOOKING = "ticketing.booking.v1.BookingService"
# What one refresh of web/src/views/dashboard.ts asks (its CHARTS and FIGURES).
RANGE_QUERIES = [
    f'max(ticketing_queue_waiting{{event_id="{EVENT}"}})',
    f'max(ticketing_queue_active{{event_id="{EVENT}"}})',
    f'sum(increase(ticketing_queue_admitted_total{{event_id="{EVENT}"}}[1m]))',
    f'max(ticketing_queue_admission_rate_per_minute{{event_id="{EVENT}"}})',
    "sum by (outcome) (rate(ticketing_holds_total[1m]))",
    *(
        f"1000 * histogram_quantile({q}, sum by (le, grpc_method) (rate("
        f'grpc_server_handling_seconds_bucket{{grpc_service="{BOOKING}",'
        f'grpc_method=~"ReserveTicket|ReserveBestAvailable|ConfirmBooking"}}[1m])))'
        for q in (0.5, 0.99)
    ),
    "max(ticketing_cdc_last_lag_seconds)",
    "histogram_quantile(0.99, sum by (le) (rate(ticketing_cdc_lag_seconds_bucket[1m])))",
]
INSTANT_QUERIES = [
    'sum(ticketing_holds_total{outcome="TAKEN"})',
    'sum(ticketing_holds_total{outcome!="TAKEN"})',
    "sum(ticketing_bookings_confirmed_total)",
]
WINDOW_S, STEP_S = 300, 2


def refresh_paths(prefix: str) -> list[str]:
    end = int(time.time()) // STEP_S * STEP_S
    ranged = [
        f"{prefix}/query_range?"
        + urllib.parse.urlencode({"query": q, "start": end - WINDOW_S, "end": end, "step": STEP_S})
        for q in RANGE_QUERIES
    ]
    instant = [f"{prefix}/query?" + urllib.parse.urlencode({"query": q}) for q in INSTANT_QUERIES]
    return ranged + instant


class Client:
    """One keep-alive HTTP/1.1 connection per query slot, as a browser keeps a few."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self.local = threading.local()

    def get(self, path: str) -> tuple[int, bool]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
            if response.getheader("content-encoding") == "gzip":
                body = gzip.decompress(body)
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return 0, False
        ok = response.status == 200 and json.loads(body).get("status") == "success"
        return response.status, ok


def run(client: Client, prefix: str, operators: int, seconds: float) -> dict[str, float]:
    """``operators`` pages refreshing back to back; each refresh's queries go out at once."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failed = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    per_refresh = len(RANGE_QUERIES) + len(INSTANT_QUERIES)

    def operator(pool: ThreadPoolExecutor) -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            began = time.perf_counter()
            answers = list(pool.map(client.get, refresh_paths(prefix)))
            took = time.perf_counter() - began
            with lock:
                latencies.append(took)
                for status, ok in answers:
                    statuses[status] = statuses.get(status, 0) + 1
                    failed += not ok

    pools = [ThreadPoolExecutor(per_refresh) for _ in range(operators)]
    began = time.monotonic()
    threads = [threading.Thread(target=operator, args=(pool,)) for pool in pools]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    for pool in pools:
        pool.shutdown()
    latencies.sort()
    return {
        "refreshes": len(latencies),
        "refreshes_per_s": len(latencies) / elapsed,
        "queries_per_s": len(latencies) * per_refresh / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "failed": failed,
        "non_200": sum(n for status, n in statuses.items() if status != 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per measured run")
    parser.add_argument("--operators", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--scrape-seconds", type=float, default=30, help="history before runs")
    args = parser.parse_args()
    ports = free_layout()
    state_dir = Path(tempfile.mkdtemp(prefix="ticketing-bench-dash-"))
    state = StateDir(state_dir)
    settings = gateway.GatewaySettings()
    lifted = settings.limits | {("read", "user"): gateway.Limit(rate=1_000_000, burst=2_000_000)}
    gateway.save_settings(state, replace(settings, limits=lifted))
    base = [str(TICKETING), "--state-dir", str(state_dir)]
    layout = ["--gateway-port", str(ports.gateway), "--port-base", str(ports.base)]
    subprocess.run(
        [*base, "up", "--detach", "--demo-data", "small", *layout],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rows: dict[tuple[int, str], dict[str, float]] = {}
    try:
        token = mint_token(state, "bench-operator", role="operator")
        paths = {
            "direct to Prometheus": (
                Client(ports.of("prometheus"), {"accept-encoding": "gzip"}),
                "/api/v1",
            ),
            "gateway, operator route": (
                Client(
                    ports.gateway, {"authorization": f"Bearer {token}", "accept-encoding": "gzip"}
                ),
                "/operator/metrics/api/v1",
            ),
        }
        time.sleep(args.scrape_seconds)  # a history for the range queries to read
        for operators in args.operators:
            for name, (client, prefix) in paths.items():
                run(client, prefix, operators, 2)  # warm-up
                rows[(operators, name)] = run(client, prefix, operators, args.duration)
    finally:
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state_dir, ignore_errors=True)
    report(rows, args)


def report(rows: dict[tuple[int, str], dict[str, float]], args: argparse.Namespace) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    per_refresh = len(RANGE_QUERIES) + len(INSTANT_QUERIES)
    lines = [
        f"### The operator dashboard's refresh, {stamp}",
        "",
        f"`bench/dashboard_queries.py --duration {args.duration:g} --operators "
        f"{' '.join(map(str, args.operators))}`: one refresh = the page's {per_refresh} queries "
        f"({len(RANGE_QUERIES)} range queries over 5 min at a 2 s step, "
        f"{len(INSTANT_QUERIES)} instant), sent at once, refreshes back to back; "
        f"{args.scrape_seconds:g} s of scraped history; client, Envoy, Prometheus and the stack "
        f"share one {os.cpu_count()}-core machine ({platform.machine()}).",
        "",
        "| operators | path | refreshes/s | queries/s | p50 ms | p99 ms | refreshes/s vs direct |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (operators, name), row in rows.items():
        direct = rows[(operators, "direct to Prometheus")]
        lines.append(
            f"| {operators} | {name} | {row['refreshes_per_s']:,.1f} | "
            f"{row['queries_per_s']:,.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | "
            f"{row['refreshes_per_s'] / direct['refreshes_per_s']:.0%} |"
        )
    failed = sum(int(row["failed"]) for row in rows.values())
    non_200 = sum(int(row["non_200"]) for row in rows.values())
    lines += [
        "",
        f"Checks: {failed} answers that were not Prometheus's `success` JSON, {non_200} non-200.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as out:
        out.write("\n" + text)
    print(json.dumps({"runs": {f"{k[0]} / {k[1]}": v for k, v in rows.items()}}))


if __name__ == "__main__":
    main()
