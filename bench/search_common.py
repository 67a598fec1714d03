# ruff: noqa: S311 - random.Random makes a reproducible catalog on purpose.
"""What the search and CDC benchmarks share: a stack of their own, and a catalog of N events.

Not a benchmark itself (run ``bench/search_gateway.py`` or ``bench/cdc_lag.py``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from deploy import demo_data
from deploy.stack.ports import SPAN, Ports, is_port_free
from deploy.stack.state import StackConfig

ROOT = Path(__file__).resolve().parent.parent
TICKETING = Path(sys.executable).parent / "ticketing"
RESULTS = ROOT / "bench" / "RESULTS.md"

TOUR_WORDS = (
    "Spring Summer Autumn Winter Midnight Golden Electric Velvet Northern Southern Silver "
    "Wild Quiet Endless Crimson Neon Open Hidden"
).split()
TOUR_NOUNS = "Tour Sessions Nights Live Revue Gala Showcase Encore Parade Weekend".split()
SEAT_MAP = {
    "sections": [{"name": "A", "price_tier": "standard", "rows": [{"label": "1", "seats": 4}]}]
}


@dataclass(frozen=True)
class Catalog:
    cities: list[tuple[str, float, float]]  # city, latitude, longitude
    performers: list[str]
    types: tuple[str, ...]
    first_day: dt.date
    days: int


def free_ports() -> Ports:
    for base in range(26000, 31000, SPAN + 3):
        if all(is_port_free(p) for p in range(base, base + SPAN + 3)):
            return Ports(gateway=base + SPAN, base=base)
    raise SystemExit("no free ports")


@contextmanager
def own_stack(env: dict[str, str] | None = None) -> Iterator[tuple[Path, StackConfig]]:
    """`ticketing up --detach --demo-data none` on free ports; always `ticketing down`."""
    ports = free_ports()
    state = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    config = StackConfig(gateway_port=ports.gateway, port_base=ports.base)
    argv = [str(TICKETING), "--state-dir", str(state)]
    environ = os.environ | (env or {}) | {"COLUMNS": "200"}
    up = [*argv, "up", "--detach", "--demo-data", "none"]
    up += ["--gateway-port", str(ports.gateway), "--port-base", str(ports.base)]
    started = subprocess.run(up, env=environ, capture_output=True, text=True, check=False)
    try:
        if started.returncode != 0:
            raise SystemExit(f"ticketing up failed:\n{started.stdout}\n{started.stderr}")
        yield state, config
    finally:
        subprocess.run([*argv, "down"], capture_output=True, check=False, timeout=120)
        shutil.rmtree(state, ignore_errors=True)


def load_catalog(database_url: str, events: int, *, seed: int = 7) -> Catalog:
    """Venues (8 halls in each demo venue's city), the demo performers, and ``events`` events
    with 4 tickets each, in one transaction (the CDC worker indexes them as one batch)."""
    rng = random.Random(seed)
    data = demo_data.generate(small=True)
    venues = []
    for base in data.venues:
        for hall in range(8):
            venues.append(
                (
                    uuid.uuid4(),
                    f"{base.name} Hall {chr(65 + hall)}",
                    base.city,
                    base.country,
                    base.latitude + rng.uniform(-0.05, 0.05),
                    base.longitude + rng.uniform(-0.05, 0.05),
                    base.timezone,
                )
            )
    performers = [(uuid.uuid4(), p.name, p.description, p.genre) for p in data.performers]
    first_day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY venues (id, name, city, country, latitude, longitude, timezone, seat_map,"
            " capacity) FROM STDIN"
        ) as copy:
            for v in venues:
                copy.write_row((*v, json.dumps(SEAT_MAP), 4))
        with cur.copy("COPY performers (id, name, description, genre) FROM STDIN") as copy:
            for p in performers:
                copy.write_row(p)
        rows, tickets = io.StringIO(), io.StringIO()
        for i in range(events):
            venue = venues[i % len(venues)]
            performer = rng.choice(performers)
            start = dt.datetime.combine(
                first_day + dt.timedelta(days=i // len(venues)), dt.time(19), tzinfo=dt.UTC
            )
            event_id = uuid.uuid4()
            name = f"{performer[1]}: {rng.choice(TOUR_WORDS)} {rng.choice(TOUR_NOUNS)}"
            description = f"{performer[2]} Live at {venue[1]}, {venue[2]}."
            type_ = rng.choice(demo_data.EVENT_TYPES)
            on_sale = start - dt.timedelta(days=60)
            fields = (
                event_id, venue[0], performer[0], name, description, type_, start.isoformat(),
                (start + dt.timedelta(hours=3)).isoformat(), on_sale.isoformat(), "EUR",
            )  # fmt: skip
            rows.write("\t".join(_copy_text(f) for f in fields) + "\n")
            for seat in range(1, 5):
                price = 2000 + 500 * rng.randrange(10)
                tickets.write(f"{event_id}\tA\t1\t{seat}\t{price}\tEUR\n")
        with cur.copy(
            "COPY events (id, venue_id, performer_id, name, description, type, start_time,"
            " end_time, on_sale_time, currency) FROM STDIN"
        ) as copy:
            copy.write(rows.getvalue())
        with cur.copy(
            "COPY tickets (event_id, section, row_label, seat_label, price_minor, currency)"
            " FROM STDIN"
        ) as copy:
            copy.write(tickets.getvalue())
    cities = sorted({(v[2], v[4], v[5]) for v in venues[::8]})
    return Catalog(
        cities=cities,
        performers=[p[1] for p in performers],
        types=demo_data.EVENT_TYPES,
        first_day=first_day,
        days=events // len(venues) + 1,
    )


def _copy_text(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def engine(url: str, path: str, body: object | None = None, method: str = "POST") -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(  # noqa: S310 (the stack's own engine, http)
        url + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read() or b"{}")


def wait_indexed(search_url: str, count: int, timeout: float = 600) -> float:
    """Seconds until the alias holds ``count`` documents."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            if engine(search_url, "/events/_count", method="GET")["count"] >= count:
                return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the index did not reach {count} documents in {timeout:.0f} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def machine() -> str:
    return f"{os.cpu_count()}-core machine ({platform.machine()})"


def append_results(text: str) -> None:
    with RESULTS.open("a") as results:
        results.write(text)
