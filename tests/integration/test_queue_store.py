"""The queue's Redis store and admitter against the stack's real Redis and Postgres: the Lua
shuffle is the domain's shuffle, positions agree however they are computed, silent buyers drop
out after the grace period, and several admitters in parallel keep the pace and admit nobody
twice (with a control run that shows the test sees the violation when the lease is off)."""

import asyncio
import datetime as dt
import random
import time
import uuid
from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from deploy.stack import certs
from deploy.stack.state import StateDir
from queue_svc import domain
from queue_svc.adapters.catalog import CatalogPolicies
from queue_svc.adapters.redis_store import LEASE_KEY, QueueStore
from queue_svc.admitter import Admitter
from queue_svc.domain import DRAW_SPAN, PreQueue, Standing
from queue_svc.policy_cache import PolicyCache
from tests.helpers import make_event, make_venue, ts
from ticketing_common.redis_client import open_redis

pytestmark = pytest.mark.integration

FAR = 4_102_444_800_000  # 2100-01-01, in ms: keys outlive the test


def own_redis(stack) -> aioredis.Redis:
    """The stack's Redis, in a database of the tests' own: the stack's admitter stays out. The
    services' client shape, with timeouts long enough for a slow machine: a call that gets no
    answer fails the test instead of hanging it."""
    return open_redis(stack.redis_url.rsplit("/", 1)[0] + "/1", timeout_seconds=10)


@pytest.fixture
async def client(stack):
    client = own_redis(stack)
    yield client
    await client.aclose()


def stack_tls(stack):
    """The operator's client certificate of the stack's development CA (mutual TLS)."""
    return certs.files_of(StateDir(Path(stack.state_dir)), certs.OPERATOR)


def catalog_address(stack) -> str:
    """The catalog itself, as the queue's TICKETING_PEERS names it (not the gateway)."""
    return f"127.0.0.1:{stack.ports['catalog']}"


def new_event() -> str:
    return str(uuid.uuid4())


async def join_all(store, event_id, users, *, open_ms, draws=None):
    snaps = []
    for i, user in enumerate(users):
        draw = draws[i] if draws else random.randrange(DRAW_SPAN)
        snaps.append(await store.join(event_id, user, open_ms=open_ms, expire_at_ms=FAR, draw=draw))
    return snaps


async def test_the_lua_shuffle_is_the_domain_shuffle(client):
    store = QueueStore(client, grace_seconds=60)
    event_id = new_event()
    users = [f"u{i:03d}" for i in range(300)]
    rng = random.Random(42)
    draws = [rng.randrange(DRAW_SPAN) for _ in users]
    await join_all(store, event_id, users, open_ms=FAR, draws=draws)

    model = PreQueue()
    for user, draw in zip(users, draws, strict=True):
        model.join(user, draw)
    stored = await store.standings(event_id, users, open_ms=FAR)
    assert all(s.standing is Standing.PRE_QUEUE for s in stored.values())
    order = sorted(users, key=lambda u: stored[u].slot)
    assert order == model.slots


def random_draw(rng: random.Random) -> int:
    """Mostly uniform, sometimes the edges (no move; a move to slot 0)."""
    roll = rng.random()
    if roll < 0.1:
        return DRAW_SPAN - 1
    if roll < 0.2:
        return 0
    return rng.randrange(DRAW_SPAN)


async def test_the_model_and_the_scripts_agree_over_many_random_pre_queues(client):
    """Seeded random runs of joins, leaves, repeated joins and joins again after leaving, all
    before the opening, applied to the Lua scripts and to ``domain.PreQueue``: after every join
    both give the same slot, and at the end every buyer's standing and slot, the line's order
    and its length agree."""
    store = QueueStore(client, grace_seconds=60)
    runs, operations = 120, 0
    for run in range(runs):
        rng = random.Random(1000 + run)
        event_id = new_event()
        people = [f"r{run}-{i}" for i in range(rng.randint(1, 40))]
        model = PreQueue()
        for _ in range(rng.randint(1, 90)):
            user = rng.choice(people)
            operations += 1
            if rng.random() < 0.7:
                draw = random_draw(rng)
                snap = await store.join(event_id, user, open_ms=FAR, expire_at_ms=FAR, draw=draw)
                expected = model.join(user, draw)
                assert (snap.standing, snap.slot) == (Standing.PRE_QUEUE, expected), (run, user)
            else:
                await store.leave(event_id, user, open_ms=FAR)
                model.leave(user)
        stored = await store.standings(event_id, people, open_ms=FAR)
        for user in people:
            if user in model.at:
                assert (stored[user].standing, stored[user].slot) == (
                    Standing.PRE_QUEUE,
                    model.at[user],
                ), (run, user)
            else:
                assert stored[user].standing in (Standing.LEFT, Standing.NONE), (run, user)
        in_line = sorted(model.at, key=lambda u: stored[u].slot)
        assert in_line == model.line(), run
        line = await store.line(event_id, open_ms=FAR, upto_slot=len(model.slots))
        assert line.vitals.waiting == model.waiting, run
    print(f"{runs} random pre-queues, {operations} operations: the model and the scripts agree")


async def test_positions_agree_between_polls_and_the_watchers_bitmap(client):
    store = QueueStore(client, grace_seconds=60)
    event_id = new_event()
    users = [f"u{i:03d}" for i in range(400)]
    await join_all(
        store, event_id, users[:200], open_ms=domain.to_ms(dt.datetime.now(dt.UTC)) + 300
    )
    await asyncio.sleep(0.4)
    await join_all(store, event_id, users[200:], open_ms=0)
    leavers = random.Random(1).sample(users, 120)
    for user in leavers:
        await store.leave(event_id, user, open_ms=0)
    staying = [u for u in users if u not in leavers]

    polled = {u: (await store.position(event_id, u, open_ms=0)).position for u in staying}
    assert sorted(polled.values()) == list(range(1, len(staying) + 1))
    slots = {u: s.slot for u, s in (await store.standings(event_id, staying, open_ms=0)).items()}
    line = await store.line(event_id, open_ms=0, upto_slot=max(slots.values()))
    ahead = domain.gone_before(line.gone, line.head // 8 * 8, line.head, slots.values())
    for user in staying:
        assert domain.position(slots[user], line.head, ahead[slots[user]]) == polled[user]
    assert line.vitals.waiting == len(staying)


async def test_buyers_who_stop_polling_drop_out_and_the_line_moves_up(client):
    store = QueueStore(client, grace_seconds=1.0)  # epochs of 0.5 s; gone within 1.5 s
    event_id = new_event()
    await join_all(store, event_id, ["silent", "polling", "behind"], open_ms=0)
    for _ in range(10):
        await asyncio.sleep(0.2)
        await store.position(event_id, "polling", open_ms=0)
        await store.touch(event_id, ["behind"])  # a watcher, kept by its process
    admitter = Admitter(store, policies=None)  # the sweeper needs no policy
    assert await admitter.sweep(event_id) == 1

    silent = await store.position(event_id, "silent", open_ms=0)
    behind = await store.position(event_id, "behind", open_ms=0)
    assert silent.standing is Standing.DROPPED
    assert domain.entry(policy_for(event_id), "silent", silent).state.value == "EXPIRED"
    assert (behind.position, behind.waiting) == (2, 2)
    # Dropping out is not final: joining again goes to the back of the line.
    again = await store.join(event_id, "silent", open_ms=0, expire_at_ms=FAR, draw=0)
    assert (again.standing, again.position) == (Standing.WAITING, 3)


async def test_buyers_joining_together_share_round_trips_and_survive_a_script_flush(client):
    """Calls made together go out as one pipeline; after a Redis restart (scripts gone) the
    first calls load the scripts again instead of failing."""
    store = QueueStore(client, grace_seconds=60)
    event_id = new_event()
    await client.script_flush()
    users = [f"together-{i}" for i in range(50)]
    joined = await asyncio.gather(
        *(store.join(event_id, u, open_ms=0, expire_at_ms=FAR, draw=0) for u in users)
    )
    assert sorted(s.position for s in joined) == list(range(1, 51))
    polled = await asyncio.gather(*(store.position(event_id, u, open_ms=0) for u in users))
    assert [p.position for p in polled] == [j.position for j in joined]


def policy_for(event_id: str) -> domain.Policy:
    now = dt.datetime.now(dt.UTC)
    return domain.Policy(event_id, True, 600, 500, 600, now, now + dt.timedelta(days=1))


# --- Several admitters ------------------------------------------------------------------------

RATE = 6000  # 100 a second
RUN_SECONDS = 4.0


@pytest.fixture(scope="module")
def open_event(stack):
    operator = (("authorization", f"Bearer {stack.token('ops-store', role='operator')}"),)

    def make(rate: int) -> str:
        with grpc.insecure_channel(stack.gateway) as channel:
            catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
            venue = make_venue(catalog, operator, 1, 1, 10)
            return make_event(
                catalog,
                operator,
                venue.id,
                days_ahead=40,
                on_sale_time=ts(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)),
                queue_policy=catalog_pb2.QueuePolicy(
                    enabled=True,
                    admission_rate_per_minute=rate,
                    max_active_users=100_000,
                    admission_ttl_seconds=600,
                ),
            ).id

    return make


async def run_admitters(stack, event_id: str, lease_keys: list[str]) -> dict[str, int]:
    """Three admitters, each with its own Redis client and policy cache, for RUN_SECONDS;
    returns each admitted buyer's admission time (ms)."""
    clients = [own_redis(stack) for _ in lease_keys]
    catalog = CatalogPolicies(catalog_address(stack), stack_tls(stack))
    store = QueueStore(clients[0], grace_seconds=60)
    users = [f"buyer-{i:04d}" for i in range(int(RATE / 60 * RUN_SECONDS * 2))]
    await join_all(store, event_id, users, open_ms=0)
    admitters = [
        Admitter(
            QueueStore(c, grace_seconds=60),
            PolicyCache(catalog),
            interval_seconds=0.05,
            owner=f"test-{i}",
            lease_key=key,
        )
        for i, (c, key) in enumerate(zip(clients, lease_keys, strict=True))
    ]
    tasks = [asyncio.create_task(a.run()) for a in admitters]
    await asyncio.sleep(RUN_SECONDS)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    found = await store.standings(event_id, users, open_ms=0)
    counts = await store.counts(event_id)
    await clients[0].delete(*set(lease_keys))
    for client in clients:
        await client.aclose()
    await catalog.aclose()
    admitted = {
        u: s.admission_expire_ms - 600_000 for u, s in found.items() if s.admission_expire_ms
    }
    assert counts.admitted_total == len(admitted)  # nobody counted twice
    return admitted


def per_minute(admitted: dict[str, int]) -> float:
    times = sorted(admitted.values())
    first_batch = times.count(times[0])
    return (len(times) - first_batch) / (times[-1] - times[0]) * 60_000


async def test_several_admitters_keep_the_pace_and_admit_everyone_once(stack, open_event):
    event_id = open_event(RATE)
    admitted = await run_admitters(stack, event_id, [LEASE_KEY] * 3)
    assert per_minute(admitted) == pytest.approx(RATE, rel=0.05)


async def test_control_admitters_without_a_shared_lease_overrun_the_pace(stack, open_event):
    event_id = open_event(RATE)
    keys = [f"queue:test-lease:{uuid.uuid4().hex}" for _ in range(3)]
    admitted = await run_admitters(stack, event_id, keys)
    assert per_minute(admitted) > RATE * 1.5


# --- Stopping ---------------------------------------------------------------------------------


async def test_an_admitter_stops_every_time_it_is_cancelled(stack, open_event):
    """Cancelled at random moments of its ticks, forty times, an admitter ends every time.

    The cause of an old hang: Python 3.11's asyncio.wait_for, which redis-py wraps around every
    command it sends, swallows a cancellation that lands as the send completes, and the
    admitter, which only waited for CancelledError, ticked on for ever. Most of these forty
    cancellations fell into that window before the admitter checked ``Task.cancelling()``."""
    event_id = open_event(RATE)
    key = f"queue:test-lease:{uuid.uuid4().hex}"
    client = own_redis(stack)
    catalog = CatalogPolicies(catalog_address(stack), stack_tls(stack))
    rng = random.Random(7)
    stopped, slowest = 0, 0.0
    try:
        store = QueueStore(client, grace_seconds=60)
        await join_all(store, event_id, [f"cancel-{i}" for i in range(500)], open_ms=0)
        policies = PolicyCache(catalog)
        for trial in range(40):
            admitter = Admitter(
                store, policies, interval_seconds=0, owner=f"cancel-{trial}", lease_key=key
            )
            running = asyncio.create_task(admitter.run())
            await asyncio.sleep(rng.uniform(0.001, 0.03))
            started = time.monotonic()
            running.cancel()
            done, _ = await asyncio.wait([running], timeout=10)
            if done:
                stopped += 1
                slowest = max(slowest, time.monotonic() - started)
            else:  # still ticking: stop it for good before failing
                while not running.done():
                    running.cancel()
                    await asyncio.wait([running], timeout=0.1)
        print(f"{stopped}/40 cancelled admitters stopped; slowest {slowest * 1000:.0f} ms")
        assert stopped == 40
    finally:
        await client.delete(key)
        await client.aclose()
        await catalog.aclose()


async def test_a_stopped_admitter_hands_its_lease_over(stack, open_event):
    """A queue process told to stop mid-sale gives the lease up as its admitter ends, so
    another process admits at its next tick instead of after the lease lapses (3 s)."""
    event_id = open_event(RATE)
    key = f"queue:test-lease:{uuid.uuid4().hex}"
    clients = [own_redis(stack) for _ in range(2)]
    catalog = CatalogPolicies(catalog_address(stack), stack_tls(stack))
    try:
        store = QueueStore(clients[0], grace_seconds=60)
        await join_all(store, event_id, [f"stop-{i}" for i in range(2000)], open_ms=0)
        first, second = (
            Admitter(
                QueueStore(c, grace_seconds=60),
                PolicyCache(catalog),
                interval_seconds=0.05,
                owner=f"stop-{i}",
                lease_key=key,
            )
            for i, c in enumerate(clients)
        )
        running = asyncio.create_task(first.run())
        while not first.leading:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # mid-sale: ticking, admitting
        assert await clients[0].get(key) == b"stop-0"
        running.cancel()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), timeout=10)
        assert await clients[0].get(key) is None  # given up, not left to lapse
        assert await second.tick() >= 0 and second.leading  # the next tick of another process
        assert await clients[0].get(key) == b"stop-1"
    finally:
        await clients[0].delete(key)
        for client in clients:
            await client.aclose()
        await catalog.aclose()


async def test_an_admitter_whose_redis_stops_answering_still_stops(stack):
    """Redis accepts the connection and then says nothing (a frozen node): ticks fail with
    the client's timeout, and a cancelled admitter ends, its hand-over bounded, instead of
    waiting for an answer that never comes."""
    held = []  # the connections, kept open and never answered
    silent = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    client = open_redis(f"redis://127.0.0.1:{port}/0", timeout_seconds=0.5)
    catalog = CatalogPolicies(catalog_address(stack), stack_tls(stack))
    try:
        admitter = Admitter(QueueStore(client, grace_seconds=60), PolicyCache(catalog))
        admitter.leading = True  # it led when the node froze: it will try to hand over
        running = asyncio.create_task(admitter.run())
        await asyncio.sleep(0.2)  # inside a call Redis will never answer
        started = time.monotonic()
        running.cancel()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), timeout=10)
        print(f"admitter on a silent Redis stopped in {(time.monotonic() - started) * 1000:.0f} ms")
        assert running.cancelled()
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await client.aclose()
        await catalog.aclose()
