"""The CDC worker's check of its lock rides on the batch's read from Postgres: against the
stack's real Postgres, a read with the active worker's lock returns the documents while that
lock's session holds it, and raises LockLost (reading nothing) once the session is gone, or for
a session that never held it (the control: the check tells holders from the rest)."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from cdc_worker.adapters.postgres import PgActiveLock, PgCatalog
from cdc_worker.ports import LockLost
from deploy.demo_data import DEMO_EVENT_ID as DEMO_EVENT

DEMO_EVENT_ID = str(DEMO_EVENT)

pytestmark = pytest.mark.integration

CDC_ROLE = "ticketing_cdc"


def url_as(stack: Any, role: str) -> str:
    parts = urlsplit(stack.database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


def read(catalog: PgCatalog, lock: PgActiveLock) -> list[str]:
    loaded = catalog.documents({DEMO_EVENT_ID}, set(), set(), [], lock=lock)
    return [item.document.event_id for item in loaded]


def test_a_read_with_the_lock_passes_only_while_its_session_holds_the_lock(
    stack: Any, db: psycopg.Connection[Any]
) -> None:
    url = url_as(stack, CDC_ROLE)
    slot = f"guard_{uuid.uuid4().hex[:12]}"  # a key of its own: no running worker's lock
    active, standby = PgActiveLock(url, slot=slot), PgActiveLock(url, slot=slot)
    catalog = PgCatalog(url, slot=slot)
    try:
        assert active.try_acquire()
        assert not standby.try_acquire()
        assert read(catalog, active) == [DEMO_EVENT_ID]
        # Control: the same read for a session that does not hold the lock is refused.
        with pytest.raises(LockLost):
            read(catalog, standby)

        # The active worker's lock session ends (its connection dropped): Postgres frees it.
        db.execute("SELECT pg_terminate_backend(%s)", (active.backend_pid,))
        deadline = time.monotonic() + 30
        while not standby.try_acquire():
            assert time.monotonic() < deadline, "the terminated session kept the lock"
            time.sleep(0.05)
        with pytest.raises(LockLost):
            read(catalog, active)
        assert read(catalog, standby) == [DEMO_EVENT_ID]
        print(f"\nguarded read: holder {standby.backend_pid} reads, the old session is refused")
    finally:
        catalog.close()
        for lock in (active, standby):
            try:
                lock.close()
            except psycopg.Error:
                pass
