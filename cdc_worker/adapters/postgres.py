"""Postgres for the CDC worker: the replication stream (psycopg2) and the catalog (psycopg 3).

psycopg 3 has no replication protocol, so the stream uses psycopg2's
``LogicalReplicationConnection`` (``pgoutput``, protocol version 1: whole transactions, sent
at commit). Everything else (documents, the slot's state) is read with psycopg 3 like in the
services.

Documents are read in a REPEATABLE READ, READ ONLY transaction whose snapshot is first checked
to see every transaction of the batch (see ``cdc_worker.domain.visible_in``). Availability
uses the schema's ``ticket_is_available``, the one definition of "a lapsed hold is available",
over the unsold tickets only (``tickets_unsold_idx``), so a sold-out event is cheap to count.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg2
import psycopg2.errors
import psycopg2.extras

from cdc_worker.domain import visible_in
from cdc_worker.pgoutput import parse_lsn
from cdc_worker.ports import (
    Loaded,
    LockLost,
    SlotBusy,
    SlotLost,
    SlotState,
    SlotStatus,
    SourceUnavailable,
)
from search_svc.documents import EventDocument

log = logging.getLogger("cdc.postgres")

APPLICATION_NAME = "cdc_worker"
# The advisory lock's key is hashtextextended(LOCK_PREFIX || slot, 0): one active worker a slot.
LOCK_PREFIX = "ticketing.cdc_worker.active:"
# How long a read waits for the batch's transactions to become visible before it goes ahead.
VISIBILITY_WAIT_SECONDS = 2.0

_DOCUMENT_SQL = """
SELECT e.id::text, e.name, e.description, e.type, e.start_time, e.end_time, e.on_sale_time,
       e.currency, e.queue_enabled,
       p.id::text, p.name, p.genre,
       v.id::text, v.name, v.city, v.region, v.country, v.latitude, v.longitude, v.timezone,
       coalesce(a.available, 0), a.min_price, a.next_expiry
FROM events e
JOIN venues v ON v.id = e.venue_id
JOIN performers p ON p.id = e.performer_id
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE ticket_is_available(t.status, t.hold_expire_time))
               AS available,
           min(t.price_minor) FILTER (WHERE ticket_is_available(t.status, t.hold_expire_time))
               AS min_price,
           min(t.hold_expire_time) FILTER (WHERE t.status = 'held' AND t.hold_expire_time > now())
               AS next_expiry
    FROM tickets t
    WHERE t.event_id = e.id AND t.status <> 'booked'
) a ON true
"""
# One statement, so one snapshot and one round trip: the snapshot it reads in (checked for the
# batch's transactions) and the documents, the snapshot on every row and on a lone row when no
# document matches.
_SOME = f"""
WITH snap AS (SELECT pg_current_snapshot()::text AS snapshot),
docs AS (
    {_DOCUMENT_SQL}
    WHERE e.id = ANY(%s::uuid[]) OR e.venue_id = ANY(%s::uuid[])
       OR e.performer_id = ANY(%s::uuid[])
)
SELECT snap.snapshot, docs.* FROM snap LEFT JOIN docs ON true
"""
_ALL = _DOCUMENT_SQL + "ORDER BY e.id"


def _document(row: Sequence[Any]) -> Loaded:
    return Loaded(
        EventDocument(
            event_id=row[0],
            name=row[1],
            description=row[2],
            type=row[3],
            start_time=row[4],
            end_time=row[5],
            on_sale_time=row[6],
            currency=row[7],
            queue_enabled=row[8],
            performer_id=row[9],
            performer_name=row[10],
            performer_genre=row[11],
            venue_id=row[12],
            venue_name=row[13],
            city=row[14],
            region=row[15],
            country_code=row[16],
            latitude=row[17],
            longitude=row[18],
            time_zone=row[19],
            available_tickets=int(row[20]),
            min_available_price_minor=row[21],
        ),
        next_hold_expiry=row[22],
    )


class _NotVisibleYet(Exception):
    pass


class PgCatalog:
    """Reads of the slot and of the documents, on one psycopg 3 connection."""

    def __init__(self, dsn: str, *, slot: str) -> None:
        self._slot = slot
        try:
            self._conn = psycopg.connect(
                dsn, autocommit=True, application_name=APPLICATION_NAME, connect_timeout=5
            )
            self._conn.execute("SET statement_timeout = '60s'")
        except psycopg.Error as exc:
            raise SourceUnavailable(f"cannot connect to Postgres: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise SourceUnavailable(f"Postgres: {exc}") from exc

    # --- the slot -----------------------------------------------------------------------------

    def slot(self) -> SlotState | None:
        rows = self._fetch(
            "SELECT confirmed_flush_lsn::text, coalesce(invalidation_reason, ''), wal_status"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (self._slot,),
        )
        if not rows:
            return None
        confirmed, invalidation, wal_status = rows[0]
        if not invalidation and wal_status == "lost":
            invalidation = "wal_removed"
        return SlotState(parse_lsn(confirmed) if confirmed else 0, invalidation)

    def create_slot(self) -> int:
        try:
            rows = self._fetch(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                (self._slot,),
            )
        except SourceUnavailable as exc:
            if isinstance(exc.__cause__, psycopg.errors.DuplicateObject):
                raise SlotBusy(f"slot {self._slot} was just created by another worker") from exc
            raise
        return parse_lsn(rows[0][0])

    def drop_slot(self) -> None:
        self._fetch("SELECT pg_drop_replication_slot(%s)", (self._slot,))

    def slot_status(self) -> SlotStatus | None:
        rows = self._fetch(
            "SELECT pg_current_wal_lsn()::text, confirmed_flush_lsn::text,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (self._slot,),
        )
        if not rows or rows[0][1] is None:
            return None
        server, confirmed, retained, wal_status = rows[0]
        return SlotStatus(parse_lsn(server), parse_lsn(confirmed), int(retained or 0), wal_status)

    # --- documents ----------------------------------------------------------------------------

    def documents(
        self,
        events: set[str],
        venues: set[str],
        performers: set[str],
        xids: Sequence[int],
    ) -> list[Loaded]:
        if not (events or venues or performers):
            return []
        params = (sorted(events), sorted(venues), sorted(performers))
        deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
        pause = 0.0005
        while True:
            # Autocommit: the statement is its own transaction and snapshot.
            rows = self._fetch(_SOME, params)
            if not xids or visible_in(rows[0][0], xids) or time.monotonic() > deadline:
                if xids and not visible_in(rows[0][0], xids):
                    log.warning(
                        "read documents although %d transaction(s) are not visible", len(xids)
                    )
                return [_document(r[1:]) for r in rows if r[1] is not None]
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def all_documents(self, chunk: int, xids: Sequence[int] = ()) -> Iterator[list[Loaded]]:
        deadline = time.monotonic() + VISIBILITY_WAIT_SECONDS
        while True:
            try:
                with self._conn.transaction():
                    self._snapshot(xids, deadline)
                    with self._conn.cursor(name="cdc_all_documents") as cur:
                        cur.itersize = chunk
                        cur.execute(_ALL)
                        while rows := cur.fetchmany(chunk):
                            yield [_document(r) for r in rows]
                return
            except _NotVisibleYet:
                time.sleep(0.002)
            except psycopg.Error as exc:
                raise SourceUnavailable(f"Postgres: {exc}") from exc

    def _snapshot(self, xids: Sequence[int], deadline: float) -> None:
        """Start the read's snapshot; _NotVisibleYet if it misses a transaction of ``xids``
        (committed in the WAL, not yet visible) and there is still time to wait for it."""
        self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = self._conn.execute("SELECT pg_current_snapshot()::text").fetchone()
        if xids and row is not None and not visible_in(row[0], xids):
            if time.monotonic() < deadline:
                raise _NotVisibleYet
            log.warning("reading documents although %d transaction(s) are not visible", len(xids))

    def events_with_holds(self) -> set[str]:
        rows = self._fetch("SELECT DISTINCT event_id::text FROM tickets WHERE status = 'held'")
        return {r[0] for r in rows}


class PgActiveLock:
    """The active worker's lock: a session-level advisory lock on a key derived from the slot
    name, on a connection of its own that lives as long as the worker is active. Postgres
    releases it when that session ends (the worker died, the connection dropped), so a standby
    takes it over by itself; TCP keepalives make a vanished peer's session end within seconds.
    """

    def __init__(self, dsn: str, *, slot: str) -> None:
        self._slot = slot
        try:
            self._conn = psycopg.connect(
                dsn,
                autocommit=True,
                application_name=f"{APPLICATION_NAME}_lock",
                connect_timeout=5,
                keepalives=1,
                keepalives_idle=2,
                keepalives_interval=1,
                keepalives_count=3,
            )
            self._conn.execute("SET statement_timeout = '5s'")
        except psycopg.Error as exc:
            raise SourceUnavailable(f"cannot connect to Postgres: {exc}") from exc

    def try_acquire(self) -> bool:
        try:
            row = self._conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + self._slot,)
            ).fetchone()
        except psycopg.Error as exc:
            raise SourceUnavailable(f"Postgres: {exc}") from exc
        return bool(row and row[0])

    def check(self) -> None:
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise LockLost(f"the lock's connection to Postgres broke: {exc}") from exc

    def close(self) -> None:
        self._conn.close()


class PgReplicationStream:
    """The slot's changes over a psycopg2 logical replication connection."""

    def __init__(
        self, dsn: str, *, slot: str, publication: str, status_interval: float = 10.0
    ) -> None:
        self._slot = slot
        self._publication = publication
        self._status_interval = status_interval
        try:
            self._conn = psycopg2.connect(
                dsn,
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                application_name=APPLICATION_NAME,
                connect_timeout=5,
            )
            self._cur = self._conn.cursor()
        except psycopg2.Error as exc:
            raise SourceUnavailable(f"cannot open a replication connection: {exc}") from exc

    def start(self, start_lsn: int) -> None:
        try:
            self._cur.start_replication(
                slot_name=self._slot,
                decode=False,
                start_lsn=start_lsn,
                # psycopg2 takes seconds as a float (the C code parses a double); its stubs
                # say int.
                status_interval=self._status_interval,  # type: ignore[arg-type]
                options={"proto_version": "1", "publication_names": self._publication},
            )
        except psycopg2.errors.ObjectInUse as exc:
            raise SlotBusy(f"another worker streams from slot {self._slot}") from exc
        except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
            raise SlotLost(str(exc).strip()) from exc
        except psycopg2.errors.UndefinedObject as exc:
            raise SourceUnavailable(f"slot {self._slot} disappeared: {exc}") from exc
        except psycopg2.Error as exc:
            raise SourceUnavailable(f"cannot start replication: {exc}") from exc

    def read(self) -> bytes | None:
        try:
            message = self._cur.read_message()
        except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
            raise SlotLost(str(exc).strip()) from exc
        except psycopg2.Error as exc:
            raise SourceUnavailable(f"replication connection lost: {exc}") from exc
        if message is None:
            return None
        payload: bytes = message.payload
        return payload

    def wait(self, timeout: float) -> None:
        try:
            select.select([self._cur], [], [], timeout)
        except (OSError, ValueError, psycopg2.Error) as exc:
            raise SourceUnavailable(f"replication connection lost: {exc}") from exc

    def confirm(self, lsn: int) -> None:
        try:
            # The stubs leave send_feedback unannotated.
            self._cur.send_feedback(  # type: ignore[no-untyped-call]
                write_lsn=lsn, flush_lsn=lsn, apply_lsn=lsn, force=True
            )
        except psycopg2.Error as exc:
            raise SourceUnavailable(f"replication connection lost: {exc}") from exc

    def keepalive(self, reply: bool = False) -> None:
        try:
            self._cur.send_feedback(reply=reply, force=True)  # type: ignore[no-untyped-call]
        except psycopg2.Error as exc:
            raise SourceUnavailable(f"replication connection lost: {exc}") from exc

    @property
    def server_lsn(self) -> int:
        return int(self._cur.wal_end or 0)

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg2.Error:
            pass
