"""Measure: the bytes of the full demo's hot event page through the gateway, as JSON (identity),
gzip and brotli (the README's figures).

    .venv/bin/python bench/event_page_bytes.py

Starts a stack of its own (`ticketing up --detach --demo-data none` on free ports) and loads
only the hot event of the full demo set (Aurora Vale at Wembley Stadium, every seat on sale:
66,460 tickets) with the demo loader, so its page is exactly the full demo's without seeding
the other few million tickets. Then GETs `/event/{id}` through the gateway once per
Accept-Encoding (identity, gzip, br), and prints the body sizes on the wire, the seat map's
share (the venue with its drawing), and the ticket count. A measurement, not a throughput
benchmark: nothing is timed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import psycopg
from common import free_layout

from deploy.demo_data import HOT_EVENT_ID, generate
from deploy.demo_data.loader import _load
from deploy.stack.ports import SPAN
from deploy.stack.state import StackConfig

TICKETING = Path(sys.executable).parent / "ticketing"


def fetch(url: str, encoding: str) -> tuple[int, str, bytes]:
    # The stack's own gateway, http on the loopback.
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})  # noqa: S310
    with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
        body = response.read()
        return len(body), response.headers.get("content-encoding", "identity"), body


def main() -> None:
    ports = free_layout()
    state = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    state.chmod(0o755)
    base = [str(TICKETING), "--state-dir", str(state)]
    gateway = ports.base + SPAN
    subprocess.run(
        [*base, "up", "--detach", "--demo-data", "none", "--port-base", str(ports.base),
         "--gateway-port", str(gateway)],
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        data = generate(small=False)
        hot = [e for e in data.events if str(e.id) == str(HOT_EVENT_ID)]
        url = StackConfig(gateway_port=gateway, port_base=ports.base).database_url
        with psycopg.connect(url, autocommit=True) as conn:
            tickets = _load(conn, data, hot, progress=False)
        page = f"http://127.0.0.1:{gateway}/event/{HOT_EVENT_ID}"
        sizes = {}
        for encoding in ("identity", "gzip", "br"):
            size, served, body = fetch(page, encoding)
            assert served == encoding, (encoding, served)
            sizes[encoding] = size
            if encoding == "identity":
                event = json.loads(body)
                seat_map = len(json.dumps(event["venue"]["seatMap"], separators=(",", ":")))
                listed = len(event.get("tickets", []))
    finally:
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"hot event page ({tickets:,} tickets loaded, {listed:,} on the page): "
        f"{sizes['identity']:,} bytes as JSON ({seat_map:,} of them the seat map with its "
        f"layout, compact), {sizes['gzip']:,} with gzip, {sizes['br']:,} with brotli"
    )
    print(json.dumps({"tickets": tickets, "seat_map_bytes": seat_map, **sizes}))


if __name__ == "__main__":
    main()
