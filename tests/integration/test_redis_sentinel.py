"""Redis high availability with Sentinel, on a group of the test's own (tests/redis_ha.py: a
primary, a replica, three Sentinels): the queue's store, opened through open_redis with the
Sentinels, keeps its line when the primary is SIGKILLed while buyers join. A Sentinel promotes
the replica, the same client follows it by itself, every buyer acknowledged before the kill
keeps their place and order (the last un-replicated joins may be lost: replication is async;
the test says how many), and every call that fails meanwhile fails as Unavailable. Prints the
seconds of unavailability. The queue service itself, on the shared stack's Postgres and the
group, answers UNAVAILABLE meanwhile and serves the line afterwards. Also: a sentinel address
that does not parse stops a service at start, naming the setting, and Sentinels that do not
answer give Unavailable, not a hang or a 500."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from ticketing.queue.v1 import queue_pb2 as Q
from ticketing.queue.v1 import queue_pb2_grpc

from deploy.stack import certs
from deploy.stack.state import StateDir
from queue_svc.adapters.redis_store import QueueStore
from queue_svc.domain import Snapshot, Standing
from tests.helpers import service_credentials
from tests.integration.test_queue import queue_event
from tests.redis_ha import free_port, sentinel_group
from ticketing_common.errors import Unavailable
from ticketing_common.redis_client import open_redis

pytestmark = pytest.mark.integration

FAR = 4_102_444_800_000  # 2100-01-01, in ms: no admission ever expires during the test
BEFORE = 200  # buyers in line before the kill
AFTER = 100  # joins that must succeed after the kill before the test stops joining
IN_LINE = {Standing.WAITING, Standing.PRE_QUEUE}


@dataclass
class Joins:
    """What the joiner saw: acknowledged places (user, slot, monotonic time the call started)
    and failures."""

    acked: list[tuple[str, int, float]] = field(default_factory=list)
    unavailable: list[float] = field(default_factory=list)
    other: list[BaseException] = field(default_factory=list)


async def join(store: QueueStore, event_id: str, user: str, open_ms: int) -> Snapshot:
    return await store.join(event_id, user, open_ms=open_ms, expire_at_ms=FAR, draw=0)


async def keep_joining(
    store: QueueStore, event_id: str, open_ms: int, joins: Joins, killed: asyncio.Event
) -> None:
    """One buyer after another, each as soon as the previous call ended, until AFTER joins have
    succeeded after the kill."""
    after = 0
    i = 0
    while after < AFTER:
        user = f"during-{i:05d}"
        i += 1
        started = time.monotonic()
        try:
            snap = await join(store, event_id, user, open_ms)
        except Unavailable:
            joins.unavailable.append(time.monotonic())
            await asyncio.sleep(0.05)  # a client's back-off, short
            continue
        except Exception as exc:  # anything but Unavailable fails the test below
            joins.other.append(exc)
            await asyncio.sleep(0.05)
            continue
        joins.acked.append((user, snap.slot, started))
        if killed.is_set():
            after += 1
        await asyncio.sleep(0.005)


async def test_the_queue_follows_a_sentinel_failover_and_keeps_its_order():
    with sentinel_group() as group:
        client = open_redis(
            f"redis://{group.primary.address}/0",
            timeout_seconds=1.0,
            sentinels=group.sentinel_addresses,
            master_name=group.master_name,
        )
        store = QueueStore(client, grace_seconds=600)
        event_id = str(uuid.uuid4())
        open_ms = int(time.time() * 1000) - 60_000  # the sale is open: first come, first served
        try:
            before = [f"before-{i:03d}" for i in range(BEFORE)]
            places = {}
            for user in before:
                places[user] = (await join(store, event_id, user, open_ms)).slot
            assert sorted(places.values()) == [places[u] for u in before]  # join order
            with group.primary.client() as primary:
                # These BEFORE joins are on the replica too: none of them may be lost.
                assert primary.execute_command("WAIT", 1, 5000) >= 1

            joins = Joins()
            killed = asyncio.Event()
            joiner = asyncio.create_task(keep_joining(store, event_id, open_ms, joins, killed))
            await asyncio.sleep(0.5)  # buyers are joining when the primary dies
            os.kill(group.primary.process.pid, signal.SIGKILL)
            # Reaped, so surely gone: a busy machine may let it answer a call after kill().
            group.primary.process.wait(timeout=10)
            killed_at = time.monotonic()
            killed.set()
            await asyncio.wait_for(joiner, timeout=60)

            promoted = group.master_port()
            assert promoted == group.replica.port, "the Sentinels did not promote the replica"

            # A call sent before the kill may have been answered by the old primary (a reply
            # read after the kill included): acknowledged, perhaps never replicated. A call sent
            # after it can only have been answered by the new primary.
            acked_before_kill = [(u, s) for u, s, t in joins.acked if t < killed_at]
            acked_after_kill = [(u, s, t) for u, s, t in joins.acked if t >= killed_at]
            first_after = acked_after_kill[0][2]
            users = before + [u for u, _ in acked_before_kill] + [u for u, _, _ in acked_after_kill]
            seen = await store.standings(event_id, users, open_ms=open_ms)

            # Every buyer in line before the kill (and replicated) keeps their place.
            assert all(seen[u].standing in IN_LINE for u in before)
            assert {u: seen[u].slot for u in before} == places
            # Joins acknowledged just before the kill: kept with their place, or lost (not yet
            # on the replica when the primary died). Nobody else's place moves.
            kept = [(u, s) for u, s in acked_before_kill if seen[u].standing in IN_LINE]
            lost = [u for u, _ in acked_before_kill if seen[u].standing not in IN_LINE]
            assert all(seen[u].slot == s for u, s in kept)
            # The line after the failover is in join order: those kept, then the new ones.
            line = before + [u for u, _ in kept] + [u for u, _, _ in acked_after_kill]
            slots = [seen[u].slot for u in line]
            missing = {u: seen[u] for u in line if seen[u].standing not in IN_LINE}
            assert not missing, f"{len(missing)} acknowledged buyers are not in line: {missing}"
            assert slots == sorted(slots) and len(set(slots)) == len(slots)
            # Calls that failed during the failover failed as the service's Unavailable.
            assert joins.other == [], f"not Unavailable: {joins.other[:3]!r}"

            last_before = max((t for _, _, t in joins.acked if t < killed_at), default=killed_at)
            failed = (
                f"{len(joins.unavailable)} calls answered Unavailable (from"
                f" {joins.unavailable[0] - killed_at:.2f} s to"
                f" {joins.unavailable[-1] - killed_at:.2f} s after the kill)"
                if joins.unavailable
                else "no call answered Unavailable"
            )
            print(
                f"\nsentinel failover: primary :{group.primary.port} SIGKILLed, replica"
                f" :{group.replica.port} promoted; joins succeed again"
                f" from {first_after - killed_at:.2f} s after the kill"
                f" ({first_after - last_before:.2f} s between the sending of the last"
                f" acknowledged join before it and the first after it); {failed};"
                f" {BEFORE} buyers in line before the kill all kept their places; of"
                f" {len(acked_before_kill)} joins acknowledged in the 0.5 s before the kill,"
                f" {len(lost)} lost (not yet replicated), {len(kept)} kept in order;"
                f" {len(acked_after_kill)} joins after it, on the new primary"
            )
        finally:
            await store.aclose()
            await client.aclose()


async def test_sentinels_that_do_not_answer_give_unavailable():
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    client = open_redis("redis://127.0.0.1/0", sentinels=dead, master_name="ticketing")
    store = QueueStore(client, grace_seconds=600)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable):
            await join(store, str(uuid.uuid4()), "nobody", 0)
    finally:
        await store.aclose()
        await client.aclose()
    print(f"no sentinel answering: Unavailable after {time.monotonic() - started:.3f} s")


def test_a_sentinel_address_that_does_not_parse_stops_the_service_by_name():
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TICKETING_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/ticketing",
        "TICKETING_REDIS_URL": "redis://127.0.0.1:1/0",
        "TICKETING_ADMISSION_KEY": "k",
        "TICKETING_REDIS_SENTINELS": "127.0.0.1:26379,sentinel-without-port",
        "TICKETING_PLAINTEXT": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "queue_svc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TICKETING_REDIS_SENTINELS" in done.stderr
    assert "sentinel-without-port" in done.stderr
    assert "Traceback" not in done.stderr


def test_sentinels_that_do_not_answer_stop_the_service_at_start_by_name():
    """Well-formed Sentinel addresses none of which answers: the queue service does not come up
    to fail every call; it waits TICKETING_STARTUP_TIMEOUT_SECONDS, then exits 2 naming the
    setting (no traceback)."""
    dead = ",".join(f"127.0.0.1:{free_port()}" for _ in range(3))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TICKETING_REDIS_URL": "redis://127.0.0.1/0",
        "TICKETING_REDIS_SENTINELS": dead,
        "TICKETING_ADMISSION_KEY": "k",
        "TICKETING_PEERS": "ticketing.catalog.v1.CatalogService=127.0.0.1:1",
        "TICKETING_PLAINTEXT": "true",
        "TICKETING_STARTUP_TIMEOUT_SECONDS": "2",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "queue_svc"], env=env, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - started
    print(
        f"\nno Sentinel answering: exit {done.returncode} after {took:.1f} s: {done.stderr[-300:]}"
    )
    assert done.returncode == 2, done.stderr
    assert "TICKETING_REDIS_SENTINELS" in done.stderr
    assert "no Sentinel answered" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_queue_service_answers_unavailable_through_a_failover_and_follows_it(stack, catalog):
    """The service itself (``python -m queue_svc`` asking the stack's catalog, on the Sentinel
    group): calls during the failover answer UNAVAILABLE, never UNKNOWN or INTERNAL, and the
    same process serves the line from the promoted replica, nobody's place lost."""
    operator = (("authorization", f"Bearer {stack.token('ops-sentinel', role='operator')}"),)
    serving = health_pb2.HealthCheckResponse.SERVING
    event_id = queue_event(catalog, operator, open_in=-60, rate=1, cap=1)
    catalog_peer = f"ticketing.catalog.v1.CatalogService=127.0.0.1:{stack.ports['catalog']}"
    tls = certs.files_of(StateDir(Path(stack.state_dir)), "queue")
    with sentinel_group() as group:
        listen = f"127.0.0.1:{free_port()}"
        env = os.environ | {
            "TICKETING_LISTEN": listen,
            # The queue asks the catalog for the event's policy (no database of its own).
            "TICKETING_PEERS": catalog_peer,
            "TICKETING_REDIS_URL": "redis://127.0.0.1/0",
            "TICKETING_REDIS_SENTINELS": ",".join(group.sentinel_addresses),
            "TICKETING_REDIS_MASTER_NAME": group.master_name,
            "TICKETING_ADMISSION_KEY": "sentinel-test-key",
            "TICKETING_LOG_LEVEL": "WARNING",
            # The queue's certificate of the stack's CA: it asks the stack's catalog over
            # mutual TLS, and the test calls it as the gateway would.
            "TICKETING_TLS_CERT": str(tls.cert),
            "TICKETING_TLS_KEY": str(tls.key),
            "TICKETING_TLS_CA": str(tls.ca),
            "TICKETING_PLAINTEXT": "false",
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "queue_svc"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            with grpc.secure_channel(listen, service_credentials(stack, certs.GATEWAY)) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if (
                            health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                            == serving
                        ):
                            break
                    except grpc.RpcError:
                        pass
                    assert service.poll() is None, service.stderr.read().decode()[-2000:]
                    assert time.monotonic() < deadline, "the queue service did not start"
                    time.sleep(0.1)
                queue = queue_pb2_grpc.QueueServiceStub(channel)

                def as_buyer(user: str):
                    return (("x-ticketing-user", user), ("x-ticketing-role", "buyer"))

                def join_queue(user: str):
                    return queue.JoinQueue(
                        Q.JoinQueueRequest(event_id=event_id), metadata=as_buyer(user), timeout=10
                    )

                before = [f"svc-before-{i:03d}" for i in range(50)]
                for user in before:
                    join_queue(user)
                with group.primary.client() as primary:
                    assert primary.execute_command("WAIT", 1, 5000) >= 1
                os.kill(group.primary.process.pid, signal.SIGKILL)
                group.primary.process.wait(timeout=10)
                killed_at = time.monotonic()
                codes: dict[str, int] = {}
                back_at = None
                i = 0
                while back_at is None:
                    assert time.monotonic() - killed_at < 60, f"never back: {codes}"
                    try:
                        join_queue(f"svc-during-{i:04d}")
                        back_at = time.monotonic()
                    except grpc.RpcError as err:
                        codes[err.code().name] = codes.get(err.code().name, 0) + 1
                        time.sleep(0.05)
                    i += 1
                assert set(codes) <= {"UNAVAILABLE"}, codes
                assert group.master_port() == group.replica.port
                for user in before:
                    queue.GetQueuePosition(
                        Q.GetQueuePositionRequest(event_id=event_id),
                        metadata=as_buyer(user),
                        timeout=10,
                    )  # NOT_IN_QUEUE would raise
                print(
                    f"\nqueue service through a Sentinel failover: JoinQueue answered again"
                    f" {back_at - killed_at:.2f} s after the primary was SIGKILLed; meanwhile"
                    f" {codes or 'no errors'}; {len(before)} of {len(before)} buyers kept"
                    " their place"
                )
        finally:
            service.terminate()
            service.wait(timeout=30)
