"""What the queue benchmarks share: a stack of their own, a queue-enabled event, buyers' tokens,
process memory, and the results file."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from common import free_layout, ts
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from ticketing.common.v1 import common_pb2

from deploy.stack.keys import claims_for, mint_token, signer
from deploy.stack.ports import Ports
from deploy.stack.state import StackConfig, StateDir, read_stack

ROOT = Path(__file__).resolve().parent.parent
TICKETING = Path(sys.executable).parent / "ticketing"
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class BenchStack:
    state: Path
    ports: Ports

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports.gateway}"

    @property
    def config(self) -> StackConfig:
        return StackConfig(gateway_port=self.ports.gateway, port_base=self.ports.base)

    def pid(self, component: str) -> int:
        snapshot = read_stack(StateDir(self.state)) or {}
        for entry in snapshot.get("components", []):
            if entry["name"] == component:
                return int(entry["pid"])
        raise LookupError(component)

    def operator(self) -> tuple[tuple[str, str], ...]:
        token = mint_token(StateDir(self.state), "bench-operator", role="operator")
        return (("authorization", f"Bearer {token}"),)

    def tokens(self, users: list[str]) -> list[str]:
        """Bearer tokens for many buyers (the development key is loaded once)."""
        issuer = signer(StateDir(self.state))
        return [issuer.sign(claims_for(user, ttl=3600)) for user in users]


@contextmanager
def bench_stack(*, start: int = 24000) -> Iterator[BenchStack]:
    """`ticketing up --detach --demo-data none` on free ports; `down` and cleanup on exit."""
    ports = free_layout(start)
    state = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
    base = [str(TICKETING), "--state-dir", str(state)]
    up = [*base, "up", "--detach", "--demo-data", "none"]
    up += ["--gateway-port", str(ports.gateway), "--port-base", str(ports.base)]
    subprocess.run(up, check=True, stdout=subprocess.DEVNULL)
    try:
        yield BenchStack(state, ports)
    finally:
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state, ignore_errors=True)


def queue_event(
    stack: BenchStack,
    *,
    opens_in: float = -60,
    rate: int = 600,
    max_active: int = 1_000_000,
    ttl: int = 600,
    day: int = 700,
) -> str:
    """A queue-enabled event created the way an operator would, through the gateway."""
    metadata = stack.operator()
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = stub.CreateVenue(
            catalog_pb2.CreateVenueRequest(
                venue=catalog_pb2.Venue(
                    name=f"Bench Queue Arena {day}",
                    city="Oslo",
                    country_code="NO",
                    time_zone="Europe/Oslo",
                    location=common_pb2.GeoPoint(latitude=59.91, longitude=10.75),
                    seat_map=catalog_pb2.SeatMap(
                        sections=[
                            catalog_pb2.Section(
                                name="A",
                                price_tier="std",
                                rows=[catalog_pb2.Row(label="1", seat_count=10)],
                            )
                        ]
                    ),
                )
            ),
            metadata=metadata,
        )
        performer = stub.CreatePerformer(
            catalog_pb2.CreatePerformerRequest(performer=catalog_pb2.Performer(name="Bench Act")),
            metadata=metadata,
        )
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = now + dt.timedelta(days=day)
        event = stub.CreateEvent(
            catalog_pb2.CreateEventRequest(
                event=catalog_pb2.Event(
                    name=f"Bench queue {day}",
                    type=catalog_pb2.EVENT_TYPE_CONCERT,
                    venue_id=venue.id,
                    performer_id=performer.id,
                    start_time=ts(start),
                    end_time=ts(start + dt.timedelta(hours=2)),
                    on_sale_time=ts(now + dt.timedelta(seconds=opens_in)),
                    currency_code="NOK",
                    queue_policy=catalog_pb2.QueuePolicy(
                        enabled=True,
                        admission_rate_per_minute=rate,
                        max_active_users=max_active,
                        admission_ttl_seconds=ttl,
                    ),
                )
            ),
            metadata=metadata,
        )
    return event.id


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()}-core {platform.machine()} machine shared with other work "
        f"(load average {load:.1f} at the start)"
    )


def append_results(title: str, command: str, lines: list[str], dry_run: bool = False) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([f"### {title}, {stamp}", "", f"`{command}`", "", *lines]) + "\n"
    print(text)
    if dry_run:
        return
    with RESULTS.open("a") as out:
        out.write("\n" + text)


def wait_until(predicate, timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False
