"""The active worker's lock loop with in-memory fakes: a worker streams only while it holds the
lock, stands by (asking again) while another holds it, and stops writing the moment its lock's
connection breaks."""

import threading
import time

import pytest
from test_cdc_pgoutput import relations
from test_cdc_replicator import (
    E1,
    SLOT,
    FakeCatalog,
    FakeIndex,
    FakeStream,
    Journal,
    document,
    ticket_updates,
)

from cdc_worker.ports import LockLost
from cdc_worker.replicator import Options, Replicator


class FakeLocks:
    """Postgres' advisory lock table: one holder, released when its session ends."""

    def __init__(self, holder=None):
        self.holder = holder
        self.mutex = threading.Lock()
        self.broken = set()

    def session(self, name):
        return FakeLock(self, name)

    def drop(self, name, successor=None):
        """The session of ``name`` ends (its connection broke); ``successor`` takes the lock."""
        with self.mutex:
            self.broken.add(name)
            if self.holder == name:
                self.holder = successor


class FakeLock:
    def __init__(self, locks, name):
        self.locks, self.name = locks, name

    def try_acquire(self):
        with self.locks.mutex:
            if self.locks.holder in (None, self.name) and self.name not in self.locks.broken:
                self.locks.holder = self.name
                return True
            return False

    def check(self):
        if self.locks.holder != self.name:
            raise LockLost("the lock's connection broke")

    def close(self):
        with self.locks.mutex:
            if self.locks.holder == self.name:
                self.locks.holder = None


def start(locks, name, journal, roles, stop, on_check=None):
    stream = FakeStream(journal, [*relations(), *ticket_updates(7, 2000, [E1], 10)], stop)
    opened = []

    def open_stream():
        opened.append(name)
        return stream

    replicator = Replicator(
        open_catalog=lambda: FakeCatalog(journal, [document(E1)], SLOT),
        open_stream=open_stream,
        index=FakeIndex(journal),
        options=Options(batch_max_seconds=10, lock_retry_seconds=0.01),
        open_lock=lambda: locks.session(name),
        on_role=roles.append,
    )
    thread = threading.Thread(target=replicator.run, args=(stop,))
    thread.start()
    return thread, opened


def wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_standby_streams_nothing_while_another_holds_the_lock_and_takes_over_when_freed():
    locks = FakeLocks(holder="other")
    journal, roles, stop = Journal(), [], threading.Event()
    thread, opened = start(locks, "standby", journal, roles, stop)
    wait_for(lambda: roles == ["standby"])
    time.sleep(0.2)  # twenty more tries at 0.01 s: still standing by, nothing opened
    assert opened == [] and journal == []
    locks.drop("other")  # the active worker died: Postgres released its lock
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert roles[:2] == ["standby", "active"]
    assert opened == ["standby"]
    assert ("confirm", 2100) in journal


@pytest.mark.parametrize("guarded", [True, False])
def test_a_worker_whose_lock_connection_broke_writes_and_confirms_nothing_more(guarded):
    """Control (guarded=False): a lock whose loss goes unnoticed lets the batch through, so
    the assertion below can see a worker streaming without the lock."""
    locks = FakeLocks()
    journal, roles, stop = Journal(), [], threading.Event()

    original = locks.session

    def session(name):
        lock = original(name)
        acquire = lock.try_acquire

        def try_acquire():
            ok = acquire()
            if ok:
                # Right after taking it, the connection breaks and a standby takes the lock.
                locks.drop(name, successor="standby")
            return ok

        lock.try_acquire = try_acquire
        if not guarded:
            lock.check = lambda: None
        return lock

    locks.session = session
    thread, opened = start(locks, "active", journal, roles, stop)
    if guarded:
        wait_for(lambda: roles.count("standby") >= 1 and opened)
        time.sleep(0.1)
        stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert locks.holder == "standby"
    written = [entry for entry in journal if entry[0] in ("write", "confirm")]
    if guarded:
        assert roles[0] == "active" and "standby" in roles
        # The batch was read from the stream but never written nor confirmed without the lock.
        assert not written, journal
    else:
        assert written  # the violation the guard prevents


def test_replicas_two_or_more_start_one_standby_cdc_worker_on_ports_of_its_own():
    from deploy.stack.ports import OFFSETS, instances

    assert instances("cdc-worker", 1) == ["cdc-worker"]
    assert instances("cdc-worker", 2) == ["cdc-worker", "cdc-worker-2"]
    assert instances("cdc-worker", 3) == ["cdc-worker", "cdc-worker-2"]
    assert len(set(OFFSETS.values())) == len(OFFSETS)  # no two components share a port
