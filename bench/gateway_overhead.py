"""Benchmark: what the gateway costs. The same unary gRPC call, straight to the service and
through Envoy with the full filter chain on.

    .venv/bin/python bench/gateway_overhead.py [--duration 6] [--connections 16] [--streams 4]

Starts a stack of its own (`ticketing up --detach --demo-data small` on free ports) and calls
CatalogService/GetEvent (BASIC view of a demo event, served from the catalog's Redis page cache)
with h2load (Debian package `nghttp2-client`; installed on first use when running as root), one
call at a time (the latency the gateway adds) and then loaded (what it does to throughput), the
same connections and concurrent streams for each path:

- direct: h2c straight to a catalog service process of the benchmark's own, started with the
  stack's environment on a spare port in plaintext (``TICKETING_PLAINTEXT=true``): h2load
  cannot present a client certificate, and the stack's services require one (mutual TLS), so
  the gateway rows include the TLS hop from Envoy to the service and the direct row does not;
- gateway, anonymous: through the gateway listener, every filter running (identity headers
  stripped, CORS, gRPC-Web, JWT (optional here, none sent), rate limits per address, the HTTP
  cache's lookup, the transcoder's pass-through, routing, health-checked upstream);
- gateway, signed in: the same with a bearer JWT, so jwt_authn verifies an RS256 signature and
  the per-user bucket is consulted too. (This stack lifts the per-user read limit so that one
  token is not refused: the limiter still runs, it just never says no.)

Prints requests/s, p50 and p99 latency for each and the ratios to direct, checks that every
call succeeded (h2load's HTTP statuses, the gateway's rate-limit and upstream counters), and
appends the table to bench/RESULTS.md. About a minute on a 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc
from common import free_layout
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.stack import gateway
from deploy.stack.components import service_env
from deploy.stack.keys import mint_token
from deploy.stack.ports import SPAN, Ports
from deploy.stack.state import StackConfig, StateDir

ROOT = Path(__file__).resolve().parent.parent
TICKETING = Path(sys.executable).parent / "ticketing"
RESULTS = ROOT / "bench" / "RESULTS.md"
EVENT_ID = "03a67087-67cc-5c61-b94c-c5f5e083f9f7"
METHOD = "/ticketing.catalog.v1.CatalogService/GetEvent"


def ensure_h2load() -> str:
    found = shutil.which("h2load")
    if not found and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nghttp2-client"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
        )
        found = shutil.which("h2load")
    if not found:
        raise SystemExit("h2load is needed: apt-get install nghttp2-client")
    return found


def h2load(
    target: str, body: Path, load: tuple[int, int], log: Path, headers: list[str], seconds: int
) -> dict[str, float]:
    """One h2load run of the gRPC call; requests/s and latency percentiles from its log."""
    log.unlink(missing_ok=True)  # h2load appends to an existing log
    argv = [
        ensure_h2load(),
        f"http://{target}{METHOD}",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-c", str(load[0]),
        "-m", str(load[1]),
        "-t", "1",
        "-D", str(seconds),
        "--log-file", str(log),
    ]  # fmt: skip
    for header in headers:
        argv += ["-H", header]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    elapsed, statuses = [], {}
    for line in log.read_text().splitlines():
        _, status, micros = line.split("\t")
        statuses[status] = statuses.get(status, 0) + 1
        elapsed.append(int(micros) / 1000)
    elapsed.sort()
    if not elapsed:
        raise SystemExit(f"h2load made no requests:\n{done.stdout}\n{done.stderr}")
    return {
        "requests": len(elapsed),
        "rps": len(elapsed) / seconds,
        "p50_ms": elapsed[len(elapsed) // 2],
        "p99_ms": elapsed[min(len(elapsed) - 1, int(len(elapsed) * 0.99))],
        "non_200": sum(n for s, n in statuses.items() if s != "200"),
    }


def envoy_stats(admin: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json") as reply:
        stats = json.loads(reply.read())["stats"]
    return {s["name"]: s["value"] for s in stats if "value" in s}


def check_call(target: str, token: str | None) -> None:
    """The benchmarked call succeeds this way (so the figures are of successes)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with grpc.insecure_channel(target) as channel:
        event = catalog_pb2_grpc.CatalogServiceStub(channel).GetEvent(
            catalog_pb2.GetEventRequest(event_id=EVENT_ID, view=catalog_pb2.EVENT_VIEW_BASIC),
            metadata=metadata,
            timeout=30,
        )
    assert event.id == EVENT_ID


def plaintext_catalog(state: StateDir, ports: Ports, listen: str) -> subprocess.Popen[bytes]:
    """A catalog_svc of the benchmark's own on ``listen``: the stack's environment (the same
    Postgres, Redis and page cache), without TLS and without metrics of its own."""
    config = StackConfig(gateway_port=ports.gateway, port_base=ports.base)
    env = service_env(config, state, "catalog") | {
        "TICKETING_LISTEN": listen,
        "TICKETING_PLAINTEXT": "true",
        "TICKETING_METRICS_LISTEN": "",
        "PROMETHEUS_MULTIPROC_DIR": str(state.run / "metrics" / "bench-direct"),
    }
    (state.run / "metrics" / "bench-direct").mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "catalog_svc"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(target: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check_call(target, None)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams each")
    args = parser.parse_args()
    ensure_h2load()
    ports = free_layout()
    state_dir = Path(tempfile.mkdtemp(prefix="ticketing-bench-gw-"))
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
    try:
        request = catalog_pb2.GetEventRequest(event_id=EVENT_ID, view=catalog_pb2.EVENT_VIEW_BASIC)
        payload = request.SerializeToString()
        body = state_dir / "request.grpc"
        body.write_bytes(struct.pack(">BI", 0, len(payload)) + payload)
        token = mint_token(state, "bench-reader")
        direct = f"127.0.0.1:{ports.base + SPAN + 1}"
        plain = plaintext_catalog(state, ports, direct)
        through = f"127.0.0.1:{ports.gateway}"
        runs = {
            "direct to the catalog": (direct, []),
            "gateway, anonymous": (through, []),
            "gateway, signed in (JWT)": (through, [f"authorization: Bearer {token}"]),
        }
        wait_for(direct)
        check_call(through, None)
        check_call(through, token)
        before = envoy_stats(ports.of("envoy-admin"))
        loads = {"one call at a time": (1, 1), "loaded": (args.connections, args.streams)}
        rows: dict[tuple[str, str], dict[str, float]] = {}
        log = state_dir / "h2load.log"
        for load_name, load in loads.items():
            for name, (target, headers) in runs.items():
                h2load(target, body, load, log, headers, seconds=2)  # warm-up
                rows[(load_name, name)] = h2load(
                    target, body, load, log, headers, seconds=args.duration
                )
        after = envoy_stats(ports.of("envoy-admin"))
    finally:
        if "plain" in locals():
            plain.terminate()
            plain.wait(timeout=30)
        subprocess.run([*base, "down"], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(state_dir, ignore_errors=True)

    limited = "gateway_rate_limit.http_local_rate_limit.rate_limited"
    through_gateway = sum(row["requests"] for (_, name), row in rows.items() if "gateway" in name)
    upstream = "cluster.catalog.upstream_rq_200"
    checks = {
        "rate_limited": after.get(limited, 0) - before.get(limited, 0),
        "catalog_200_via_gateway": after.get(upstream, 0) - before.get(upstream, 0),
        "measured_via_gateway": through_gateway,
    }
    report(rows, checks, args)


def report(rows: dict[tuple[str, str], dict[str, float]], checks: dict[str, int], args) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### Gateway overhead on a unary gRPC call, {stamp}",
        "",
        f"`bench/gateway_overhead.py --duration {args.duration} --connections "
        f"{args.connections} --streams {args.streams}`: CatalogService/GetEvent (BASIC, from "
        "the catalog's page cache) with h2load, one call at a time, then "
        f"{args.connections * args.streams} in flight; client, Envoy and services share one "
        f"{os.cpu_count()}-core machine ({platform.machine()}).",
        "",
        "| load | path | req/s | p50 ms | p99 ms | req/s vs direct | p50 vs direct |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (load, name), row in rows.items():
        direct = rows[(load, "direct to the catalog")]
        lines.append(
            f"| {load} | {name} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['rps'] / direct['rps']:.0%} | "
            f"{row['p50_ms'] / direct['p50_ms']:.2f}x |"
        )
    failures = sum(int(row["non_200"]) for row in rows.values())
    lines += [
        "",
        f"Checks: {failures} non-200 responses; {checks['rate_limited']} rate-limited; the "
        f"catalog answered {checks['catalog_200_via_gateway']:,} gateway calls with 200 for "
        f"{checks['measured_via_gateway']:,} measured (the rest are warm-ups).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with RESULTS.open("a") as out:
        out.write("\n" + text)
    print(json.dumps({"runs": {" / ".join(k): v for k, v in rows.items()}, "checks": checks}))


if __name__ == "__main__":
    main()
