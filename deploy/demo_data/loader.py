"""The loader: ``seed`` writes the generated data with psycopg, the small tables with plain
inserts, the tickets with ``COPY ... FROM STDIN``, one transaction per batch of events."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from deploy.demo_data.generator import generate
from deploy.demo_data.records import TICKET_COLUMNS, DemoData, Event
from deploy.demo_data.tables import HOT_EVENT_ID

# The package's name, as the logger was called before the module was split.
log = logging.getLogger("deploy.demo_data")


@dataclass(frozen=True)
class SeedSummary:
    """What the database holds after ``seed`` (counts of the whole tables, not only demo rows)."""

    venues: int
    performers: int
    events: int
    tickets: int
    # The queue-enabled hot sale, None if it is not in the database.
    hot_event_id: uuid.UUID | None
    # Tickets this call wrote: 0 when the demo data was already there.
    loaded_tickets: int = 0


# Serializes concurrent seeders (a stack start and a test, say): pg_advisory_lock key.
_ADVISORY_LOCK_KEY = 0x7469636B6574  # "ticket"
# Commit after at least this many tickets: bounded transactions, and a Ctrl-C keeps the work
# done so far (the next run loads only the missing events).
_BATCH_TICKETS = 100_000
# Reset empties these; CASCADE also empties tables that later migrations hang off them.
_RESET_TABLES = (
    "idempotency_keys",
    "payments",
    "booking_tickets",
    "bookings",
    "tickets",
    "events",
    "performers",
    "venues",
)


def seed(
    database_url: str, *, small: bool = False, reset: bool = False, progress: bool = True
) -> SeedSummary:
    """Load the demo data into a migrated database; return what the database then holds.

    Idempotent: the demo rows have fixed ids, and an event is written in the same transaction
    as its tickets. If every demo event is already there (a second run, or a small set over a
    full one) nothing is written. If only some are (an interrupted run), the missing ones are
    loaded; rows already there are left as they are (so a full set over a small one keeps the
    small allocation of the 20 shared events). ``reset=True`` first truncates the catalog and
    booking tables, so the result is exactly the chosen set.

    Concurrent calls are serialized by an advisory lock: the second finds the data there.
    """
    started = time.monotonic()
    data = generate(small=small)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Session-level lock, released when the connection closes.
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        if reset:
            tables = sql.SQL(", ").join(map(sql.Identifier, _RESET_TABLES))
            conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(tables))
        missing = _missing_events(conn, data)
        loaded = _load(conn, data, missing, progress=progress) if missing else 0
        summary = _summary(conn, loaded)
    log.info(
        "demo data %s",
        "loaded" if loaded else "already present",
        extra={
            "small": small,
            "events_loaded": len(missing),
            "tickets_loaded": loaded,
            "seconds": round(time.monotonic() - started, 1),
        },
    )
    return summary


def _missing_events(conn: psycopg.Connection[Any], data: DemoData) -> list[Event]:
    wanted = [event.id for event in data.events]
    present = {
        row[0] for row in conn.execute("SELECT id FROM events WHERE id = ANY(%s)", (wanted,))
    }
    return [event for event in data.events if event.id not in present]


def _batches(data: DemoData, events: Sequence[Event]) -> Iterator[list[Event]]:
    batch: list[Event] = []
    size = 0
    for event in events:
        batch.append(event)
        size += data.ticket_count(event)
        if size >= _BATCH_TICKETS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _load(
    conn: psycopg.Connection[Any], data: DemoData, events: Sequence[Event], *, progress: bool
) -> int:
    with conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO venues (id, name, address, city, region, country, latitude,"
                " longitude, timezone, seat_map, capacity)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [
                    (
                        v.id,
                        v.name,
                        v.address,
                        v.city,
                        v.region,
                        v.country,
                        v.latitude,
                        v.longitude,
                        v.timezone,
                        Jsonb(v.seat_map()),
                        v.capacity,
                    )
                    for v in data.venues
                ],
            )
            cur.executemany(
                "INSERT INTO performers (id, name, description, genre) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                [(p.id, p.name, p.description, p.genre) for p in data.performers],
            )

    total = sum(data.ticket_count(event) for event in events)
    loaded = 0
    with _progress_bar(progress, total) as advance:
        for batch in _batches(data, events):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO events (id, venue_id, performer_id, name, description, type,"
                    " start_time, end_time, on_sale_time, queue_enabled,"
                    " queue_admission_rate_per_minute, queue_max_active,"
                    " queue_admission_ttl_seconds, max_tickets_per_user, currency)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [
                        (
                            e.id,
                            e.venue_id,
                            e.performer_id,
                            e.name,
                            e.description,
                            e.type,
                            e.start_time,
                            e.end_time,
                            e.on_sale_time,
                            e.queue_enabled,
                            e.queue_admission_rate_per_minute,
                            e.queue_max_active,
                            e.queue_admission_ttl_seconds,
                            e.max_tickets_per_user,
                            e.currency,
                        )
                        for e in batch
                    ],
                )
                columns = ", ".join(TICKET_COLUMNS)
                with cur.copy(f"COPY tickets ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    # currency is char(3): psycopg has no binary dumper for bpchar,
                    # and text's binary form (the bytes) is what char's input reads.
                    copy.set_types(["uuid", "uuid", "text", "text", "text", "int8", "text"])
                    for event in batch:
                        pending = 0
                        for ticket in data.tickets(event):
                            copy.write_row(ticket)
                            pending += 1
                            if pending == 10_000:
                                advance(pending)
                                loaded += pending
                                pending = 0
                        advance(pending)
                        loaded += pending
    with conn.cursor() as cur:
        # Fresh statistics, so the first queries after a seed get sensible plans.
        cur.execute("ANALYZE venues, performers, events, tickets")
    return loaded


@contextmanager
def _progress_bar(show: bool, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``: a rich progress bar on stderr, or a no-op when ``show`` is False."""
    if not show:
        yield lambda n: None
        return
    with Progress(
        TextColumn("[bold]seeding tickets"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("tickets", total=total)
        yield lambda n: bar.advance(task, n)


def _summary(conn: psycopg.Connection[Any], loaded: int) -> SeedSummary:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM venues), (SELECT count(*) FROM performers),"
        " (SELECT count(*) FROM events), (SELECT count(*) FROM tickets),"
        " (SELECT id FROM events WHERE id = %s)",
        (HOT_EVENT_ID,),
    ).fetchone()
    assert row is not None
    venues, performers, events, tickets, hot_event_id = row
    return SeedSummary(venues, performers, events, tickets, hot_event_id, loaded)
