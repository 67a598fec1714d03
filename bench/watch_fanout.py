"""Benchmark: WatchAvailability fan-out, N watchers of one event in one catalog process.

    .venv/bin/python bench/watch_fanout.py [--watchers 1000,10000] [--changes 20]
        [--clients 4] [--gateway] [--dry-run]

Starts a stack of its own (one catalog process), creates an on-sale event of 2,000 seats,
then for each N runs two rounds with the same client processes and the same cadence:

1. the raw building block: a bare grpc.aio server (same mutual TLS, a process of its own)
   whose N streams push pre-encoded ``AvailabilityUpdate`` bytes, each update handed to it
   over a pipe; no database, no catalog code (reached directly, even with ``--gateway``);
2. the catalog: N WatchAvailability streams (straight to the catalog's port as the gateway,
   or through Envoy with ``--gateway``), then ``--changes`` holds committed one at a time, two
   a second (each an UPDATE of one ticket, as booking's hold makes it).

The watchers are spread over ``--clients`` processes (grpc.aio, 20 connections each): one
Python process cannot read 10,000 streams on its own, so the client side is split and its
CPU is printed (a client that is saturated would show up as the bottleneck). Measures:

- change latency: from just before the COMMIT (raw: just before the update is handed to the
  server) to the change's arrival at each watcher, p50/p99 over every (watcher, change)
  pair, and the deliveries missing;
- the NOTIFY itself: the same commits' latency to one plain psycopg LISTEN connection;
- messages per second delivered to the watchers while the changes run, and the ratios of
  the catalog's p99 and messages/s to the raw server's;
- memory per watcher of both servers: (RSS with the N streams open - RSS before) / N;
- server and client CPU seconds, streams that failed to open or broke, snapshots resent.

Appends the figures to bench/RESULTS.md (``--dry-run`` only prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import multiprocessing.connection
import select
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import aio_channel, as_gateway
from queue_common import (
    BenchStack,
    append_results,
    bench_stack,
    cpu_seconds,
    machine,
    rss_mb,
    wait_until,
)
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.stack import certs
from deploy.stack.state import StateDir
from tests.helpers import make_event, make_venue
from ticketing_common.server import MAX_PENDING_CALLS
from ticketing_common.tls import TlsFiles, server_credentials

CHANNELS_PER_CLIENT = 20
CHANGE_SPACING = 0.5  # seconds between two commits: above the 0.25 s coalescing window
NODE_CLIENT = Path(__file__).resolve().parent / "watch_client.mjs"
METHOD = "/ticketing.catalog.v1.CatalogService/WatchAvailability"


# --- the client processes -----------------------------------------------------------------


def watch_worker(
    target: str,
    tls: TlsFiles | None,
    event_id: str,
    count: int,
    open_by: float,
    stop_at: float,
    opened: Any,
    stop: Any,
    out: multiprocessing.connection.Connection,
) -> None:
    """One client process: ``count`` streams; records when each change arrived at each.
    ``opened`` (a shared counter) counts the first snapshots received."""

    async def run() -> dict[str, object]:
        options = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]
        channels = [aio_channel(target, tls, options) for _ in range(CHANNELS_PER_CLIENT)]
        calls = [
            c.unary_stream(
                METHOD,
                request_serializer=catalog_pb2.WatchAvailabilityRequest.SerializeToString,
                response_deserializer=catalog_pb2.AvailabilityUpdate.FromString,
            )
            for c in channels
        ]
        request = catalog_pb2.WatchAvailabilityRequest(event_id=event_id)
        arrivals: dict[str, list[float]] = {}
        counts = {"snapshots": 0, "messages": 0}
        errors: dict[str, int] = {}

        async def watch(i: int) -> None:
            await asyncio.sleep(open_by * i / max(1, count))
            first = True
            try:
                async for update in calls[i % len(calls)](request):
                    now = time.time()
                    if update.HasField("snapshot"):
                        counts["snapshots"] += 1
                        if first:
                            first = False
                            with opened.get_lock():
                                opened.value += 1
                        continue
                    counts["messages"] += 1
                    for change in update.changes:
                        arrivals.setdefault(change.ticket_id, []).append(now)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    key = f"{exc.code().name}: {(exc.details() or '')[:60]}"
                    errors[key] = errors.get(key, 0) + 1

        cpu0 = time.process_time()
        tasks = [asyncio.create_task(watch(i)) for i in range(count)]
        while time.time() < stop_at and not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close(grace=None)
        return {
            "arrivals": arrivals,
            **counts,
            "errors": errors,
            "cpu": time.process_time() - cpu0,
        }

    out.send(asyncio.run(run()))
    out.close()


class Clients:
    """``n`` watchers over ``processes`` client processes."""

    def __init__(
        self, processes: int, target: str, tls: TlsFiles | None, event_id: str, n: int
    ) -> None:
        self.n = n
        self.opened = multiprocessing.Value("i", 0)
        self.stop = multiprocessing.Event()
        self.open_by = max(2.0, n / 2000)
        self.stop_at = time.time() + self.open_by + 60 + 40 * CHANGE_SPACING + 15
        self._pipes = []
        self._procs = []
        for i in range(processes):
            count = n // processes + (i < n % processes)
            receive, send = multiprocessing.Pipe(duplex=False)
            proc = multiprocessing.Process(
                target=watch_worker,
                args=(
                    target,
                    tls,
                    event_id,
                    count,
                    self.open_by,
                    self.stop_at,
                    self.opened,
                    self.stop,
                    send,
                ),
            )
            proc.start()
            send.close()
            self._pipes.append(receive)
            self._procs.append(proc)

    def wait_open(self) -> bool:
        return wait_until(lambda: self.opened.value >= self.n, timeout=self.open_by + 60)

    def results(self) -> list[dict[str, Any]]:
        """Stops the clients and collects what they saw."""
        self.stop.set()
        out = [p.recv() for p in self._pipes]
        for proc in self._procs:
            proc.join(30)
        return out


class NodeClients:
    """``n`` watchers over ``processes`` Node processes (bench/watch_client.mjs)."""

    def __init__(
        self, processes: int, target: str, tls: TlsFiles | None, event_id: str, n: int
    ) -> None:
        self.n = n
        self.open_by = max(2.0, n / 2000)
        self._opened = 0
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen[str]] = []
        self._results: list[dict[str, Any]] = []
        self._readers: list[threading.Thread] = []
        for i in range(processes):
            count = n // processes + (i < n % processes)
            spec: dict[str, Any] = {
                "url": f"{'https' if tls else 'http'}://{target}",
                "path": METHOD,
                "eventId": event_id,
                "count": count,
                "connections": max(1, -(-count // 50)),
                "openBy": self.open_by,
            }
            if tls is not None:
                spec |= {"ca": str(tls.ca), "cert": str(tls.cert), "key": str(tls.key)}
            proc = subprocess.Popen(
                ["node", str(NODE_CLIENT), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self._procs.append(proc)
            reader = threading.Thread(target=self._read, args=(proc, count), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, proc: subprocess.Popen[str], count: int) -> None:
        assert proc.stdout is not None
        for text in proc.stdout:
            if text.strip() == "opened":
                with self._lock:
                    self._opened += count
            elif text.startswith("{"):
                with self._lock:
                    self._results.append(json.loads(text))

    @property
    def opened(self) -> int:
        with self._lock:
            return self._opened

    def wait_open(self) -> bool:
        return wait_until(lambda: self.opened >= self.n, timeout=self.open_by + 60)

    def results(self) -> list[dict[str, Any]]:
        for proc in self._procs:
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        for reader in self._readers:
            reader.join(60)
        for proc in self._procs:
            proc.wait(30)
        return self._results


def clients(
    args: argparse.Namespace, target: str, tls: TlsFiles | None, event_id: str, n: int
) -> Clients | NodeClients:
    kind = NodeClients if args.client == "node" else Clients
    return kind(args.clients, target, tls, event_id, n)


# --- the raw building block: a bare grpc.aio server pushing pre-encoded bytes ---------------


def raw_server(port: int, tls: TlsFiles, snapshot: bytes, updates: Any) -> None:
    """Serves METHOD: the snapshot, then every update handed over the pipe, in order, to
    every stream; nothing else."""

    async def main() -> None:
        published: list[bytes] = []
        wake = [asyncio.Event()]

        def publish(data: bytes) -> None:
            published.append(data)
            woken, wake[0] = wake[0], asyncio.Event()
            woken.set()

        async def watch(request: bytes, context: grpc.aio.ServicerContext) -> Any:
            yield snapshot
            sent = len(published)
            while True:
                if sent == len(published):
                    await wake[0].wait()
                    continue
                sent += 1
                yield published[sent - 1]

        handler = grpc.method_handlers_generic_handler(
            "ticketing.catalog.v1.CatalogService",
            {
                "WatchAvailability": grpc.unary_stream_rpc_method_handler(
                    watch, request_deserializer=None, response_serializer=None
                )
            },
        )
        server = grpc.aio.server(
            options=[
                ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            ]
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_secure_port(f"127.0.0.1:{port}", server_credentials(tls))
        await server.start()
        loop = asyncio.get_running_loop()

        def reader() -> None:
            while True:
                try:
                    data = updates.recv_bytes()
                except EOFError:
                    loop.call_soon_threadsafe(stop.set)
                    return
                loop.call_soon_threadsafe(publish, data)

        stop = asyncio.Event()
        threading.Thread(target=reader, daemon=True).start()
        await stop.wait()
        await server.stop(None)

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def change_bytes(ticket: catalog_pb2.Ticket) -> bytes:
    update = catalog_pb2.AvailabilityUpdate()
    update.read_time.FromDatetime(dt.datetime.now(dt.UTC))
    update.changes.add(
        ticket_id=ticket.id,
        section=ticket.section,
        row=ticket.row,
        seat=ticket.seat,
        status=catalog_pb2.TICKET_STATUS_HELD,
    )
    return update.SerializeToString()


# --- the figures --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tally(
    n: int, started: dict[str, float], results: list[dict[str, Any]], took: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    for r in results:
        for ticket_id, t0 in started.items():
            latencies.extend(t - t0 for t in r["arrivals"].get(ticket_id, []))
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    messages = sum(r["messages"] for r in results)
    return {
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "deliveries": len(latencies),
        "missing": len(started) * n - len(latencies),
        "rate": messages / took,
        "messages": messages,
        "resnapshots": sum(r["snapshots"] for r in results) - n,
        "errors": errors,
        "client_cpu": sum(r["cpu"] for r in results),
    }


def measure_raw(
    stack: BenchStack, args: argparse.Namespace, n: int, event_id: str, tickets: list[Any]
) -> dict[str, Any]:
    port = free_port()
    receive, send = multiprocessing.Pipe(duplex=False)
    snapshot = catalog_pb2.AvailabilityUpdate()
    snapshot.snapshot.sections.add(
        section="S00", runs=[catalog_pb2.StateRun(status=catalog_pb2.TICKET_STATUS_AVAILABLE)]
    )
    server = multiprocessing.Process(
        target=raw_server,
        args=(
            port,
            certs.files_of(StateDir(stack.state), "catalog"),
            snapshot.SerializeToString(),
            receive,
        ),
    )
    server.start()
    receive.close()
    try:
        time.sleep(1.0)
        rss_before, cpu_before = rss_mb(server.pid or 0), cpu_seconds(server.pid or 0)
        watchers = clients(args, f"127.0.0.1:{port}", as_gateway(stack.state), event_id, n)
        opened = watchers.wait_open()
        time.sleep(1.0)
        rss_open = rss_mb(server.pid or 0)
        t = time.time()
        started: dict[str, float] = {}
        for ticket in tickets[: args.changes]:
            data = change_bytes(ticket)
            started[ticket.id] = time.time()
            send.send_bytes(data)
            time.sleep(CHANGE_SPACING)
        took = time.time() - t
        time.sleep(2.0)  # the last deliveries
        cpu_after = cpu_seconds(server.pid or 0)
        send.close()
        server.join(30)
        results = watchers.results()
    finally:
        if server.is_alive():
            server.kill()
    return {
        **tally(n, started, results, took),
        "opened": opened,
        "kib": (rss_open - rss_before) * 1024 / n,
        "server_cpu": cpu_after - cpu_before,
    }


def catalog_watchers(stack: BenchStack) -> float:
    import urllib.request

    url = f"http://127.0.0.1:{stack.ports.of('catalog-metrics')}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("ticketing_availability_watchers"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_changes(
    database_url: str, tickets: list[str], changes: int
) -> tuple[dict[str, float], list[float]]:
    """Commit ``changes`` holds one by one; returns each ticket's time just before its COMMIT
    and the latencies seen by a plain LISTEN connection (the NOTIFY itself)."""
    listener = psycopg.connect(database_url, autocommit=True)
    listener.execute("LISTEN ticket_availability")
    raw: list[float] = []
    started: dict[str, float] = {}
    with psycopg.connect(database_url) as writer:
        for ticket_id in tickets[:changes]:
            writer.execute(
                "UPDATE tickets SET status = 'held', holder_user_id = 'bench',"
                " hold_expire_time = now() + interval '10 minutes' WHERE id = %s",
                (ticket_id,),
            )
            t0 = time.time()
            writer.commit()
            started[ticket_id] = t0
            deadline = time.monotonic() + 5
            got = False
            while not got and time.monotonic() < deadline:
                select.select([listener.fileno()], [], [], 0.5)
                for note in listener.notifies(timeout=0):
                    if ticket_id in note.payload:
                        raw.append(time.time() - t0)
                        got = True
            time.sleep(CHANGE_SPACING)
    listener.close()
    return started, raw


def measure_catalog(
    stack: BenchStack, args: argparse.Namespace, n: int, event_id: str, tickets: list[str]
) -> dict[str, Any]:
    if args.gateway:
        target, tls = stack.gateway, None
    else:
        target, tls = f"127.0.0.1:{stack.ports.of('catalog')}", as_gateway(stack.state)
    pid = stack.pid("catalog")
    before = catalog_watchers(stack)
    rss_before, cpu_before = rss_mb(pid), cpu_seconds(pid)
    watchers = clients(args, target, tls, event_id, n)
    opened = watchers.wait_open() and wait_until(
        lambda: catalog_watchers(stack) >= before + n, timeout=30
    )
    time.sleep(1.0)
    rss_open = rss_mb(pid)
    t = time.time()
    started, notify = run_changes(stack.config.database_url, tickets, args.changes)
    took = time.time() - t
    time.sleep(2.0)
    cpu_after = cpu_seconds(pid)
    results = watchers.results()
    return {
        **tally(n, started, results, took),
        "opened": opened,
        "kib": (rss_open - rss_before) * 1024 / n,
        "server_cpu": cpu_after - cpu_before,
        "notify_p50": statistics.median(notify),
        "notify_p99": percentile(notify, 0.99),
    }


def new_event(stack: BenchStack, day: int) -> tuple[str, list[Any]]:
    metadata = stack.operator()
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        venue = make_venue(catalog, metadata, sections=4, rows=20, seats=25)
        event = make_event(catalog, metadata, venue.id, days_ahead=day)
        page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return event.id, list(page.tickets)


def line(n: int, label: str, r: dict[str, Any]) -> str:
    return (
        f"  - {label}: p50 {r['p50'] * 1000:.0f} ms, p99 {r['p99'] * 1000:.0f} ms over"
        f" {r['deliveries']:,} deliveries ({r['missing']:,} missing, all {n:,} open:"
        f" {r['opened']}); {r['rate']:,.0f} messages/s ({r['messages']:,});"
        f" {r['kib']:.1f} KiB per watcher; server CPU {r['server_cpu']:.1f} s, clients CPU"
        f" {r['client_cpu']:.1f} s; snapshots resent {r['resnapshots']:,};"
        f" errors {r['errors'] or 'none'}"
    )


def measure(stack: BenchStack, args: argparse.Namespace, n: int, day: int) -> list[str]:
    event_id, tickets = new_event(stack, day)
    raw = measure_raw(stack, args, n, event_id, tickets[args.changes :])
    cat = measure_catalog(stack, args, n, event_id, [t.id for t in tickets])
    via = "through Envoy" if args.gateway else "straight to the catalog (mutual TLS)"
    return [
        f"- **{n:,} watchers** over {args.clients} {args.client} client processes, {via}:"
        f" catalog p99 {cat['p99'] * 1000:.0f} ms = {cat['p99'] / raw['p99']:.1f}x the raw"
        f" server's, messages/s {cat['rate'] / raw['rate']:.2f}x; NOTIFY to a plain LISTEN"
        f" p50 {cat['notify_p50'] * 1000:.1f} ms, p99 {cat['notify_p99'] * 1000:.1f} ms",
        line(n, "catalog WatchAvailability", cat),
        line(n, "raw grpc.aio streams, pre-encoded bytes", raw),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", default="1000,10000")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--client", choices=("node", "python"), default="node", help="what the watchers run"
    )
    parser.add_argument("--gateway", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    counts = [int(x) for x in args.watchers.split(",")]
    header = f"On a {machine()}; one catalog process, an event of 2,000 seats, changes"
    header += f" committed {1 / CHANGE_SPACING:.0f}/s, {args.changes} per run."
    lines = [header, ""]
    with bench_stack() as stack:
        for i, n in enumerate(counts):
            lines += measure(stack, args, n, day=1700 + 3 * i)
            with contextlib.suppress(Exception):
                print("\n".join(lines[-3:]), flush=True)
    command = " ".join(["python bench/watch_fanout.py", *sys.argv[1:]])
    append_results("WatchAvailability fan-out", command, lines, dry_run=args.dry_run)


if __name__ == "__main__":
    main()
