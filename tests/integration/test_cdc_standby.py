"""The CDC worker's active/standby on a `ticketing up --replicas 2` stack of its own: two
workers run, one holds the slot's advisory lock and streams, the other stands by. The active
one is SIGKILLed in the middle of a burst of changes (event renames and ticket holds); the
standby takes over by itself within 10 s, at no moment do two workers hold the lock or stream
the slot, and afterwards the index equals Postgres. The test prints what it measured."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from deploy.stack import certs
from deploy.stack.ports import HOST
from deploy.stack.probes import grpc_health
from deploy.stack.state import StateDir, read_stack
from tests.conftest import log_tails, new_state_dir, pick_port_layout, run_ticketing, stack_for
from tests.integration.test_cdc import index_documents, postgres_documents
from ticketing_common import mesh

pytestmark = pytest.mark.integration

TAKEOVER_S = 10.0
CONVERGE_S = 90.0


@pytest.fixture(scope="module")
def replicated() -> Iterator[Any]:
    state_dir, layout = new_state_dir("ticketing-cdc-standby-"), pick_port_layout()
    up = run_ticketing(
        state_dir, "up", "--detach", "--demo-data", "small", "--replicas", "2", *layout.up_args()
    )
    if up.returncode != 0:
        report = f"{up.stdout}\n{up.stderr}\n{log_tails(state_dir)}"
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)
        pytest.fail(f"ticketing up --replicas 2 failed:\n{report}", pytrace=False)
    try:
        yield stack_for(state_dir, layout)
    finally:
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


def component(stack, name: str) -> dict[str, Any]:
    snapshot = read_stack(StateDir(stack.state_dir)) or {}
    return next(c for c in snapshot["components"] if c["name"] == name)


def is_active(stack, name: str) -> bool:
    probe = grpc_health(
        f"{HOST}:{stack.ports[name]}",
        mesh.CDC_ACTIVE_HEALTH,
        tls=certs.files_of(StateDir(stack.state_dir), certs.STACK),
    )
    return probe() is None


def roles(stack) -> dict[str, str]:
    done = run_ticketing(stack.state_dir, "status", "--json")
    rows = json.loads(done.stdout)["components"]
    return {r["name"]: r["role"] for r in rows if r["name"].startswith("cdc-worker")}


def wait_until(predicate, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"timed out: {what}"
        time.sleep(0.05)
    return time.monotonic() - began


class Watch(threading.Thread):
    """Samples Postgres: how many sessions hold the CDC lock, how many stream the slot."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.done = url, threading.Event()
        self.most_locks = self.most_streams = self.samples = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as db:
            while not self.done.is_set():
                (locks,) = db.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND a.application_name = 'cdc_worker_lock'"
                ).fetchone()
                (streams,) = db.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'cdc_worker'"
                ).fetchone()
                self.most_locks = max(self.most_locks, locks)
                self.most_streams = max(self.most_streams, streams)
                self.samples += 1
                time.sleep(0.02)


class Burst(threading.Thread):
    """Renames events and holds and releases tickets, one small transaction at a time."""

    def __init__(self, url: str, events: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.events, self.done = url, events, threading.Event()
        self.commits = 0

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as db:
            while not self.done.is_set():
                event = self.events[self.commits % len(self.events)]
                with db.transaction():
                    db.execute(
                        "UPDATE events SET name = %s WHERE id = %s",
                        (f"Standby burst {self.commits}", event),
                    )
                    db.execute(
                        "UPDATE tickets SET status = CASE status WHEN 'available' THEN 'held'"
                        " ELSE 'available' END, holder_user_id = CASE status WHEN 'available' THEN"
                        " 'standby-burst' END, hold_expire_time = CASE status WHEN"
                        " 'available' THEN now() + interval '1 hour' END"
                        " WHERE id IN (SELECT id FROM tickets WHERE event_id = %s"
                        " AND status IN ('available', 'held') ORDER BY id LIMIT 3)",
                        (event,),
                    )
                self.commits += 1
                time.sleep(0.005)


def test_the_standby_takes_over_from_a_sigkilled_active_worker_and_the_index_equals_postgres(
    replicated,
):
    stack = replicated
    assert component(stack, "cdc-worker-2")["status"] == "running"
    assert roles(stack) == {"cdc-worker": "active", "cdc-worker-2": "standby"}
    assert is_active(stack, "cdc-worker") and not is_active(stack, "cdc-worker-2")

    with psycopg.connect(stack.database_url, autocommit=True) as db:
        events = [r[0] for r in db.execute("SELECT id::text FROM events ORDER BY id LIMIT 8")]
    watch, burst = Watch(stack.database_url), Burst(stack.database_url, events)
    watch.start()
    burst.start()
    try:
        time.sleep(2.0)
        victim = component(stack, "cdc-worker")
        before = burst.commits
        os.kill(victim["pid"], signal.SIGKILL)
        killed = time.monotonic()
        takeover = wait_until(
            lambda: is_active(stack, "cdc-worker-2"), TAKEOVER_S, "the standby streams"
        )
        time.sleep(2.0)  # the burst goes on against the new active worker
    finally:
        burst.done.set()
        burst.join(30)
    during = burst.commits - before
    print(
        f"\nactive CDC worker SIGKILLed after {before} commits of the burst; the standby "
        f"streamed {takeover:.2f} s later; {burst.commits} commits in all "
        f"({during} after the kill)"
    )
    assert takeover <= TAKEOVER_S

    with psycopg.connect(stack.database_url, autocommit=True) as db:
        deadline = time.monotonic() + CONVERGE_S
        while True:
            expected, actual = postgres_documents(db), index_documents(stack)
            if actual == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    watch.done.set()
    watch.join(10)
    changed = {e: (expected[e], actual.get(e)) for e in events}
    differ = {e: pair for e, pair in changed.items() if pair[0] != pair[1]}
    print(
        f"index vs Postgres: {len(actual)} documents in the index, {len(expected)} events in "
        f"Postgres, {len(events)} changed events, {len(differ)} differ; "
        f"at most {watch.most_locks} lock holder(s) and {watch.most_streams} stream(s) over "
        f"{watch.samples} samples; the restarted worker came back in "
        f"{time.monotonic() - killed:.1f} s"
    )
    assert not differ, differ
    assert actual == expected
    assert watch.most_locks <= 1 and watch.most_streams <= 1
    assert watch.samples > 0

    # The killed worker came back (the supervisor restarts it) and stands by.
    wait_until(
        lambda: (
            component(stack, "cdc-worker")["pid"] not in (None, victim["pid"])
            and component(stack, "cdc-worker")["status"] == "running"
        ),
        60,
        "the killed worker restarts",
    )
    wait_until(
        lambda: roles(stack) == {"cdc-worker": "standby", "cdc-worker-2": "active"},
        30,
        "the restarted worker stands by",
    )
