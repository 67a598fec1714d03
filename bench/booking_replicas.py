"""Hot-event holds with 1, 2, 3 instances of every service (`ticketing up --replicas N`), in
one run, with the raw Postgres rate beside them and the booking instances' CPU per hold.

On one small machine more instances cannot go faster (they share its cores); the figure to
read is that they do not go slower, and the CPU per hold, to size a cluster. Zero tickets may be
handed out twice in every run. Appends to bench/RESULTS.md.

    .venv/bin/python bench/booking_replicas.py [--replicas 1,2,3] [--buyers 64]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from booking_holds import RESULTS, TICKETING, create_event, pgbench, reserve_all
from common import free_layout

from deploy.stack.keys import mint_token
from deploy.stack.state import StackConfig, StateDir, read_stack

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their children (a service's workers)."""
    total = 0.0
    for pid in pids:
        for task in [pid, *_children(pid)]:
            try:
                fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in found]


def run(replicas: int, buyers: int) -> dict:
    ports = free_layout()
    state = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    base = [str(TICKETING), "--state-dir", str(state)]
    up = [*base, "up", "--detach", "--demo-data", "none", "--replicas", str(replicas)]
    up += ["--gateway-port", str(ports.gateway), "--port-base", str(ports.base)]
    subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
    try:
        config = StackConfig(gateway_port=ports.gateway, port_base=ports.base)
        token = mint_token(StateDir(state), "bench-ops", role="operator")
        operator = (("authorization", f"Bearer {token}"),)
        import grpc
        from ticketing.catalog.v1 import catalog_pb2_grpc

        with grpc.insecure_channel(config.gateway) as channel:
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            event_id, tickets = create_event(catalog, operator, rows=10, seats=500, day=800)
            raw_event, _ = create_event(catalog, operator, rows=10, seats=500, day=810)
        tokens = [mint_token(StateDir(state), f"buyer-{i}") for i in range(len(tickets))]
        booking = [
            c["pid"]
            for c in read_stack(StateDir(state))["components"]
            if c["name"] == "booking" or c["name"].startswith("booking-")
        ]
        before = cpu_seconds(booking)
        result = asyncio.run(reserve_all(config.gateway, tokens, tickets, buyers))
        result["cpu_ms_per_hold"] = (cpu_seconds(booking) - before) / result["holds"] * 1000
        result["instances"] = len(booking)
        result["raw"] = pgbench(config, raw_event, 10, 500, 5, state)
        with psycopg.connect(config.database_url) as conn:
            held = conn.execute(
                "SELECT count(*), count(DISTINCT id) FROM tickets WHERE event_id = %s"
                " AND status = 'held'",
                (event_id,),
            ).fetchone()
        assert held[0] == held[1] == result["holds"], (held, result["holds"])
        return result
    finally:
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3")
    parser.add_argument("--buyers", type=int, default=64)
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    results = {n: run(n, args.buyers) for n in counts}
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### Hot-event holds with several instances of every service, {stamp}",
        "",
        f"`bench/booking_replicas.py --replicas {args.replicas} --buyers {args.buyers}`; one "
        f"{os.cpu_count()}-core machine ({platform.machine()}) for clients, gateway, every "
        "instance and Postgres; 5,000 tickets of one event; raw Postgres measured on each "
        "stack. Zero tickets handed out twice.",
        "",
        "| instances | holds/s | p50 ms | p99 ms | refused | raw Postgres/s | vs raw "
        "| booking CPU ms per hold |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, r in results.items():
        lines.append(
            f"| {n} | {r['per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['failures']:,} | {r['raw']:,.0f} | {r['per_s'] / r['raw']:.1%} | "
            f"{r['cpu_ms_per_hold']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as out:
        out.write("\n" + text)


if __name__ == "__main__":
    main()
