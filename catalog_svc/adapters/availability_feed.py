"""WatchAvailability's Postgres side: the seat states it reads (through the pool) and the
feed of committed changes (one LISTEN connection per process on ``ticket_availability``,
filled by the trigger of migration 0011)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from catalog_svc.availability import FeedItem, Resync, TicketState
from catalog_svc.domain import SeatMap
from ticketing_common.errors import NotFound, Reason, Unavailable

log = logging.getLogger("ticketing.catalog.availability")

CHANNEL = "ticket_availability"

_STATE_COLUMNS = """
    id::text, section, row_label, seat_label,
    ticket_effective_status(status, hold_expire_time),
    CASE WHEN status = 'held' AND hold_expire_time > now() THEN hold_expire_time END
"""


class PostgresAvailabilitySource:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def event_tickets(self, event_id: str) -> tuple[SeatMap, list[TicketState]]:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    "SELECT v.seat_map FROM events e JOIN venues v ON v.id = e.venue_id"
                    " WHERE e.id = %s",
                    (event_id,),
                )
                row = await cur.fetchone()
                if row is None:
                    raise NotFound(
                        f"no event with id {event_id}",
                        reason=Reason.EVENT_NOT_FOUND,
                        metadata={"event_id": event_id},
                    )
                cur = await conn.execute(
                    f"SELECT {_STATE_COLUMNS} FROM tickets WHERE event_id = %s", (event_id,)
                )
                tickets = [TicketState(*r) for r in await cur.fetchall()]
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise Unavailable("the catalog database is not reachable right now") from exc
        return SeatMap.from_document(row[0]), tickets

    async def ticket_states(self, event_id: str, ticket_ids: Sequence[str]) -> list[TicketState]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    f"SELECT {_STATE_COLUMNS} FROM tickets"
                    " WHERE id = ANY(%s::uuid[]) AND event_id = %s",
                    (list(ticket_ids), event_id),
                )
                rows = await cur.fetchall()
                await conn.rollback()
        except (PoolTimeout, psycopg.OperationalError) as exc:
            raise Unavailable("the catalog database is not reachable right now") from exc
        return [TicketState(*r) for r in rows]


def parse_payload(payload: str) -> tuple[str, list[str]] | None:
    """``"<event id> <ticket id>,<ticket id>,..."`` (the trigger's format)."""
    event_id, _, ids = payload.partition(" ")
    if not event_id or not ids:
        return None
    return event_id, ids.split(",")


class PostgresAvailabilityFeed:
    """One autocommit connection that LISTENs; reconnects by itself and then says Resync,
    since notifications sent while it was away are lost."""

    def __init__(self, database_url: str, *, retry_seconds: float = 0.5) -> None:
        self._url = database_url
        self._retry = retry_seconds

    async def changes(self) -> AsyncIterator[FeedItem]:
        first = True
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._url, autocommit=True, application_name="catalog-availability"
                )
            except psycopg.OperationalError as exc:
                log.warning("availability feed: cannot connect (%s); retrying", exc)
                await asyncio.sleep(self._retry)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                if not first:
                    yield Resync()
                first = False
                async for note in conn.notifies():
                    item = parse_payload(note.payload)
                    if item is not None:
                        yield item
            except psycopg.OperationalError as exc:
                log.warning("availability feed: connection lost (%s); reconnecting", exc)
                await asyncio.sleep(self._retry)
            finally:
                await conn.close()
