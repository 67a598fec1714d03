"""Benchmark: drawing a 90,000-seat stadium's seat map in the web client, in headless Chromium.

    .venv/bin/python bench/seatmap_draw.py [--seats 90000] [--rounds 20]

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports), creates a
stadium venue drawn like the demo's (deploy/demo_data: the same generator and layouts, scaled
up to about --seats places, its floor standing room) and an event with a ticket for every place
(GenerateTickets, with --tickets; without, every seat is drawn as not on sale, which costs the
same: each seat is one square of its state's colour), then opens the event page in Debian's
Chromium (tests/e2e/browser.mjs, journey seat_map_bench) and times with performance.now():

- the first full draw of the map (the whole venue, sections);
- 24 frames of a zoom in (factor 1.15 each, sections then seats), p50 and p99;
- every seat of the venue drawn at once, p50 and p99 over --rounds draws;
- in the same page, the raw building block: as many 2x2 squares filled on a canvas of the
  same size in one path (no map, no states, no transform); the ratio is ours to it.

Prints the figures and appends them to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from common import free_layout, ts
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.common.v1 import common_pb2

from catalog_svc.domain import SeatMap
from catalog_svc.mapping import seat_map_to_proto
from deploy.demo_data.generator import _stadium
from deploy.demo_data.records import Venue
from deploy.stack.keys import mint_token
from deploy.stack.ports import SPAN
from deploy.stack.state import StateDir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
TICKETING = Path(sys.executable).parent / "ticketing"
DRIVER = ROOT / "tests" / "e2e" / "browser.mjs"


def stadium(seats: int) -> catalog_pb2.SeatMap:
    """The demo's stadium (deploy/demo_data), scaled to about ``seats`` places."""
    scale, built = 1.0, []
    for _ in range(40):
        built = _stadium(random.Random(7), scale)  # noqa: S311 (the demo's own generator)
        total = sum(s.capacity for s in built)
        if abs(total - seats) / seats < 0.01:
            break
        scale *= (seats / total) ** 0.5
    venue = Venue(
        id=None,  # type: ignore[arg-type]
        key="bench-stadium",
        name="Bench Stadium",
        address="",
        city="Oslo",
        region="",
        country="NO",
        latitude=59.91,
        longitude=10.75,
        timezone="Europe/Oslo",
        kind="stadium",
        sections=tuple(built),
    )
    return seat_map_to_proto(SeatMap.from_document(venue.seat_map()))


def create_event(stub, metadata, seat_map: catalog_pb2.SeatMap, tickets: bool) -> str:
    venue = stub.CreateVenue(
        catalog_pb2.CreateVenueRequest(
            venue=catalog_pb2.Venue(
                name="Bench Stadium",
                city="Oslo",
                country_code="NO",
                time_zone="Europe/Oslo",
                location=common_pb2.GeoPoint(latitude=59.91, longitude=10.75),
                seat_map=seat_map,
            )
        ),
        metadata=metadata,
        timeout=120,
    )
    performer = stub.CreatePerformer(
        catalog_pb2.CreatePerformerRequest(performer=catalog_pb2.Performer(name="Bench Band")),
        metadata=metadata,
    )
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=30)
    event = stub.CreateEvent(
        catalog_pb2.CreateEventRequest(
            event=catalog_pb2.Event(
                name="Bench stadium night",
                type=catalog_pb2.EVENT_TYPE_CONCERT,
                venue_id=venue.id,
                performer_id=performer.id,
                start_time=ts(start),
                end_time=ts(start + dt.timedelta(hours=3)),
                on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
                currency_code="NOK",
            )
        ),
        metadata=metadata,
    )
    if not tickets:
        return event.id
    tiers = {s.price_tier for s in seat_map.sections}
    stub.GenerateTickets(
        catalog_pb2.GenerateTicketsRequest(
            event_id=event.id, tier_prices_minor=dict.fromkeys(tiers, 45000)
        ),
        metadata=metadata,
        timeout=300,
    )
    return event.id


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=90_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--tickets",
        action="store_true",
        help="also GenerateTickets for every place (one statement; on a loaded 2-core machine "
        "90,000 at once may outlast the catalog's database timeout)",
    )
    args = parser.parse_args()

    ports = free_layout()
    state = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    state.chmod(0o755)
    base = [str(TICKETING), "--state-dir", str(state)]
    gateway = f"127.0.0.1:{ports.base + SPAN}"
    subprocess.run(
        [
            *base,
            "up",
            "--detach",
            "--demo-data",
            "none",
            "--port-base",
            str(ports.base),
            "--gateway-port",
            str(ports.base + SPAN),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    out = Path(tempfile.mkdtemp(prefix="seatmap-bench-"))
    try:
        token = mint_token(StateDir(state), "bench-operator", role="operator")
        metadata = (("authorization", f"Bearer {token}"),)
        seat_map = stadium(args.seats)
        with grpc.insecure_channel(gateway) as channel:
            started = time.perf_counter()
            event_id = create_event(
                catalog_pb2_grpc.CatalogServiceStub(channel), metadata, seat_map, args.tickets
            )
            created = time.perf_counter() - started
        done = subprocess.run(
            [
                "node",
                str(DRIVER),
                "seat_map_bench",
                "--gateway",
                gateway,
                "--out",
                str(out),
                "--params",
                json.dumps({"eventId": event_id, "rounds": args.rounds, "tickets": args.tickets}),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            check=False,
        )
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise SystemExit(f"no result from the browser:\n{done.stdout}\n{done.stderr}")
        seen = json.loads(lines[-1])
        if not seen["ok"]:
            raise SystemExit(f"the journey failed: {seen['error']}")
    finally:
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
    report(seen, args, created)


def report(seen: dict, args, created: float) -> None:
    zoom = [f["ms"] for f in seen["zoom"]]
    seat_frames = [f["ms"] for f in seen["zoom"] if f["mode"] == "seats"]
    section_frames = [f["ms"] for f in seen["zoom"] if f["mode"] == "sections"]
    every = [f["ms"] for f in seen["allSeats"]]
    raw = seen["rawMs"]
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        ("first full draw (whole venue, sections)", [seen["firstDrawMs"]]),
        (f"zoom frames, sections ({len(section_frames)})", section_frames),
        (f"zoom frames, seats in view ({len(seat_frames)})", seat_frames),
        (f"every seat at once ({len(every)} draws)", every),
        (f"raw: {seen['seats']:,} squares in one path ({len(raw)} fills)", raw),
    ]
    flags = " --tickets" if args.tickets else ""
    made = (
        "and a ticket per place " if args.tickets else "(no tickets: seats drawn as not on sale) "
    )
    lines = [
        f"### The seat map of a {seen['seats']:,}-place stadium in Chromium, {stamp}",
        "",
        f"`bench/seatmap_draw.py --seats {args.seats} --rounds {args.rounds}{flags}`; Debian's "
        "headless Chromium (software rendering, --disable-gpu) on the same "
        f"{os.cpu_count()}-core machine ({platform.machine()}) as the stack; canvas "
        f"{seen['width']}x{seen['height']} px, "
        f"{seen['sections']} sections; venue and event "
        f"{made}"
        f"created in {created:.1f} s.",
        "",
        "| draw | p50 ms | p99 ms | frames/s at p50 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in rows:
        if not values:
            continue
        p50 = statistics.median(values)
        lines.append(f"| {name} | {p50:.2f} | {pct(values, 0.99):.2f} | {1000 / p50:,.0f} |")
    ratio = statistics.median(every) / statistics.median(raw)
    lines.append("")
    lines.append(
        f"Every seat at once takes {ratio:.2f}x the raw fill of as many squares "
        f"(p50 {statistics.median(every):.2f} ms vs {statistics.median(raw):.2f} ms); the "
        f"zoom's frames, p99 {pct(zoom, 0.99):.2f} ms over {len(zoom)}, draw only the "
        "sections in view."
    )
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as results:
        results.write("\n" + text)


if __name__ == "__main__":
    main()
