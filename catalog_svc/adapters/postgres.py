"""The catalog's Postgres adapter: domain objects in and out, SQL inside.

Ticket status is always read through the schema's ``ticket_effective_status`` /
``ticket_is_available`` functions, the one definition of "a lapsed hold is available".
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors, sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from catalog_svc.domain import (
    Event,
    EventFilter,
    EventPage,
    NewTicket,
    Performer,
    QueuePolicy,
    RequestKey,
    SeatMap,
    Ticket,
    TicketSummary,
    Venue,
)
from ticketing_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Reason,
    Unavailable,
)
from ticketing_common.idempotency import run_once

_EVENT_COLUMNS = """
    e.id::text, e.name, e.description, e.type, e.venue_id::text, e.performer_id::text,
    e.start_time, e.end_time, e.on_sale_time, e.queue_enabled,
    e.queue_admission_rate_per_minute, e.queue_max_active, e.queue_admission_ttl_seconds,
    e.max_tickets_per_user, e.currency, e.create_time, e.update_time, e.version
"""
_VENUE_COLUMNS = """
    v.id::text, v.name, v.address, v.city, v.region, v.country, v.latitude, v.longitude,
    v.timezone, v.seat_map, v.capacity, v.create_time, v.update_time
"""
_PERFORMER_COLUMNS = "p.id::text, p.name, p.description, p.genre, p.create_time, p.update_time"
_N_EVENT, _N_VENUE = 18, 13

_SUMMARY_SQL = """
    SELECT event_id::text,
           count(*),
           count(*) FILTER (WHERE ticket_is_available(status, hold_expire_time)),
           count(*) FILTER (WHERE status = 'held' AND hold_expire_time > now()),
           count(*) FILTER (WHERE status = 'booked'),
           min(price_minor) FILTER (WHERE ticket_is_available(status, hold_expire_time))
    FROM tickets WHERE event_id = ANY(%s::uuid[]) GROUP BY event_id
"""


def _event(row: Sequence[Any]) -> Event:
    return Event(
        id=row[0],
        name=row[1],
        description=row[2],
        type=row[3],
        venue_id=row[4],
        performer_id=row[5],
        start_time=row[6],
        end_time=row[7],
        on_sale_time=row[8],
        queue_policy=QueuePolicy(row[9], row[10], row[11], row[12]),
        max_tickets_per_user=row[13],
        currency=row[14],
        create_time=row[15],
        update_time=row[16],
        version=row[17],
    )


def _venue(row: Sequence[Any]) -> Venue:
    return Venue(
        id=row[0],
        name=row[1],
        address=row[2],
        city=row[3],
        region=row[4],
        country_code=row[5],
        latitude=row[6],
        longitude=row[7],
        time_zone=row[8],
        seat_map=SeatMap.from_document(row[9]),
        capacity=row[10],
        create_time=row[11],
        update_time=row[12],
    )


def _performer(row: Sequence[Any]) -> Performer:
    return Performer(*row)


# What a catalog request_id records: the created record's id (a UUID) or a ticket count.
_RECORDED_ANSWER = re.compile(r"[0-9a-f-]{36}|[0-9]{1,9}")


class CatalogRepository:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection in a transaction; database trouble becomes UNAVAILABLE and
        constraint violations the matching client error."""
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except PoolTimeout as exc:
            raise Unavailable("the catalog database is not reachable right now") from exc
        except errors.ForeignKeyViolation as exc:
            raise _missing_reference(exc) from exc
        except errors.ExclusionViolation as exc:
            raise FailedPrecondition(
                "the venue already has an event at that time",
                reason=Reason.VENUE_TIME_CONFLICT,
            ) from exc
        except (errors.CheckViolation, errors.InvalidTextRepresentation) as exc:
            raise InvalidArgument(f"rejected by the catalog: {exc.diag.message_primary}") from exc
        except psycopg.OperationalError as exc:
            raise Unavailable("the catalog database is not reachable right now") from exc

    # --- reads ---------------------------------------------------------------------------

    async def event_page(self, event_id: str) -> EventPage:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"""
                SELECT {_EVENT_COLUMNS}, {_VENUE_COLUMNS}, {_PERFORMER_COLUMNS}
                FROM events e
                JOIN venues v ON v.id = e.venue_id
                JOIN performers p ON p.id = e.performer_id
                WHERE e.id = %s
                """,
                (event_id,),
            )
            row = await cur.fetchone()
            if row is None:
                raise _event_not_found(event_id)
            cur = await conn.execute(
                """
                SELECT id::text, section, row_label, seat_label, price_minor,
                       ticket_effective_status(status, hold_expire_time),
                       CASE WHEN status = 'held' THEN hold_expire_time END
                FROM tickets WHERE event_id = %s
                ORDER BY section, length(row_label), row_label, length(seat_label), seat_label
                """,
                (event_id,),
            )
            tickets = [Ticket(*r) for r in await cur.fetchall()]
        return EventPage(
            event=_event(row[:_N_EVENT]),
            venue=_venue(row[_N_EVENT : _N_EVENT + _N_VENUE]),
            performer=_performer(row[_N_EVENT + _N_VENUE :]),
            tickets=tickets,
        )

    async def list_events(
        self, where: EventFilter, after: tuple[dt.datetime, str] | None, limit: int
    ) -> list[tuple[Event, Venue, Performer]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, value in (
            ("e.performer_id", where.performer_id),
            ("e.venue_id", where.venue_id),
            ("e.type", where.type),
        ):
            if value is not None:
                clauses.append(sql.SQL(f"{column} = %s"))
                params.append(value)
        if where.start_after is not None:
            clauses.append(sql.SQL("e.start_time >= %s"))
            params.append(where.start_after)
        if where.start_before is not None:
            clauses.append(sql.SQL("e.start_time < %s"))
            params.append(where.start_before)
        if after is not None:
            clauses.append(sql.SQL("(e.start_time, e.id) > (%s::timestamptz, %s::uuid)"))
            params.extend(after)
        condition = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("true")
        query = sql.SQL(
            f"""
            SELECT {_EVENT_COLUMNS}, {_VENUE_COLUMNS}, {_PERFORMER_COLUMNS}
            FROM events e
            JOIN venues v ON v.id = e.venue_id
            JOIN performers p ON p.id = e.performer_id
            WHERE {{}} ORDER BY e.start_time, e.id LIMIT %s
            """
        ).format(condition)
        async with self._connection() as conn:
            cur = await conn.execute(query, [*params, limit])
            rows = await cur.fetchall()
        return [
            (
                _event(r[:_N_EVENT]),
                _venue(r[_N_EVENT : _N_EVENT + _N_VENUE]),
                _performer(r[_N_EVENT + _N_VENUE :]),
            )
            for r in rows
        ]

    async def summaries(self, event_ids: Sequence[str]) -> dict[str, TicketSummary]:
        if not event_ids:
            return {}
        async with self._connection() as conn:
            cur = await conn.execute(_SUMMARY_SQL, (list(event_ids),))
            rows = await cur.fetchall()
        return {r[0]: TicketSummary(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    async def list_tickets(
        self,
        event_id: str,
        *,
        section: str | None,
        status: str | None,
        after: tuple[str, str, str] | None,
        limit: int,
    ) -> list[Ticket]:
        clauses = ["event_id = %s"]
        params: list[Any] = [event_id]
        if section is not None:
            clauses.append("section = %s")
            params.append(section)
        if status == "available":
            clauses.append("ticket_is_available(status, hold_expire_time)")
        elif status == "held":
            clauses.append("status = 'held' AND hold_expire_time > now()")
        elif status == "booked":
            clauses.append("status = 'booked'")
        if after is not None:
            clauses.append("(section, row_label, seat_label) > (%s, %s, %s)")
            params.extend(after)
        async with self._connection() as conn:
            cur = await conn.execute(
                f"""
                SELECT id::text, section, row_label, seat_label, price_minor,
                       ticket_effective_status(status, hold_expire_time),
                       CASE WHEN status = 'held' THEN hold_expire_time END
                FROM tickets WHERE {" AND ".join(clauses)}
                ORDER BY section, row_label, seat_label LIMIT %s
                """,
                [*params, limit],
            )
            return [Ticket(*r) for r in await cur.fetchall()]

    async def event_exists(self, event_id: str) -> bool:
        async with self._connection() as conn:
            cur = await conn.execute("SELECT 1 FROM events WHERE id = %s", (event_id,))
            return await cur.fetchone() is not None

    async def get_venue(self, venue_id: str) -> Venue:
        async with self._connection() as conn:
            return await _fetch_venue(conn, venue_id)

    async def get_performer(self, performer_id: str) -> Performer:
        async with self._connection() as conn:
            return await _fetch_performer(conn, performer_id)

    async def get_event(self, event_id: str) -> Event:
        async with self._connection() as conn:
            return await _fetch_event(conn, event_id)

    # --- writes (each in the caller's transaction, see ``write``) ---------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[CatalogWriter]:
        async with self._connection() as conn:
            yield CatalogWriter(conn)


class CatalogWriter:
    """Mutations inside one transaction, so an idempotency claim commits with its effect
    (``catalog_svc.ports.CatalogTransaction``)."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def once(self, key: RequestKey, action: Callable[[], Awaitable[str]]) -> str:
        async def act() -> bytes:
            return (await action()).encode()

        answer = await run_once(
            self.conn,
            user_id=key.user_id,
            method=key.method,
            request_id=key.request_id,
            request=key.fingerprint,
            action=act,
        )
        recorded = answer.decode("ascii", errors="replace")
        if not _RECORDED_ANSWER.fullmatch(recorded):
            # Recorded before the use cases moved out of the servicer, when the answer was the
            # serialized response: replaying it is not possible, creating again would not be
            # idempotent, so the caller is told to use a new request_id.
            raise InvalidArgument(
                "request_id was used before an upgrade of the catalog; use a new one",
                reason=Reason.REQUEST_ID_REUSED,
                metadata={"field": "request_id"},
            )
        return recorded

    async def venue(self, venue_id: str) -> Venue:
        return await _fetch_venue(self.conn, venue_id)

    async def performer(self, performer_id: str) -> Performer:
        return await _fetch_performer(self.conn, performer_id)

    async def event(self, event_id: str) -> Event:
        return await _fetch_event(self.conn, event_id)

    async def insert_venue(self, venue: Venue) -> Venue:
        cur = await self.conn.execute(
            """
            INSERT INTO venues (name, address, city, region, country, latitude, longitude,
                                timezone, seat_map, capacity)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id::text
            """,
            (*_venue_values(venue), venue.seat_map.capacity),
        )
        row = await cur.fetchone()
        assert row is not None
        return await _fetch_venue(self.conn, row[0])

    async def update_venue(self, venue: Venue) -> tuple[Venue, list[str]]:
        cur = await self.conn.execute(
            """
            UPDATE venues SET name = %s, address = %s, city = %s, region = %s, country = %s,
                latitude = %s, longitude = %s, timezone = %s, seat_map = %s, capacity = %s
            WHERE id = %s
            """,
            (*_venue_values(venue), venue.seat_map.capacity, venue.id),
        )
        if cur.rowcount == 0:
            raise _venue_not_found(venue.id)
        return await _fetch_venue(self.conn, venue.id), await self._event_ids("venue_id", venue.id)

    async def insert_performer(self, performer: Performer) -> Performer:
        cur = await self.conn.execute(
            "INSERT INTO performers (name, description, genre) VALUES (%s, %s, %s)"
            " RETURNING id::text",
            (performer.name, performer.description, performer.genre),
        )
        row = await cur.fetchone()
        assert row is not None
        return await _fetch_performer(self.conn, row[0])

    async def update_performer(self, performer: Performer) -> tuple[Performer, list[str]]:
        cur = await self.conn.execute(
            "UPDATE performers SET name = %s, description = %s, genre = %s WHERE id = %s",
            (performer.name, performer.description, performer.genre, performer.id),
        )
        if cur.rowcount == 0:
            raise _performer_not_found(performer.id)
        events = await self._event_ids("performer_id", performer.id)
        return await _fetch_performer(self.conn, performer.id), events

    async def insert_event(self, event: Event) -> Event:
        cur = await self.conn.execute(
            """
            INSERT INTO events (name, description, type, venue_id, performer_id, start_time,
                end_time, on_sale_time, queue_enabled, queue_admission_rate_per_minute,
                queue_max_active, queue_admission_ttl_seconds, max_tickets_per_user, currency)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id::text
            """,
            _event_values(event),
        )
        row = await cur.fetchone()
        assert row is not None
        return await _fetch_event(self.conn, row[0])

    async def update_event(self, event: Event) -> Event:
        cur = await self.conn.execute(
            """
            UPDATE events SET name = %s, description = %s, type = %s, venue_id = %s,
                performer_id = %s, start_time = %s, end_time = %s, on_sale_time = %s,
                queue_enabled = %s, queue_admission_rate_per_minute = %s, queue_max_active = %s,
                queue_admission_ttl_seconds = %s, max_tickets_per_user = %s, currency = %s
            WHERE id = %s
            """,
            (*_event_values(event), event.id),
        )
        if cur.rowcount == 0:
            raise _event_not_found(event.id)
        return await _fetch_event(self.conn, event.id)

    async def lock_event(self, event_id: str) -> tuple[Event, int]:
        """The event, locked against concurrent inventory generation, and its ticket count."""
        cur = await self.conn.execute(
            f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.id = %s FOR UPDATE", (event_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise _event_not_found(event_id)
        cur = await self.conn.execute(
            "SELECT count(*) FROM tickets WHERE event_id = %s", (event_id,)
        )
        count = await cur.fetchone()
        assert count is not None
        return _event(row), int(count[0])

    async def insert_tickets(self, event: Event, tickets: Sequence[NewTicket]) -> None:
        async with (
            self.conn.cursor() as cur,
            cur.copy(
                "COPY tickets (event_id, section, row_label, seat_label, price_minor, currency)"
                " FROM STDIN"
            ) as copy,
        ):
            for t in tickets:
                await copy.write_row(
                    (event.id, t.section, t.row, t.seat, t.price_minor, event.currency)
                )

    async def _event_ids(self, column: str, value: str) -> list[str]:
        cur = await self.conn.execute(
            sql.SQL("SELECT id::text FROM events WHERE {} = %s").format(sql.Identifier(column)),
            (value,),
        )
        return [r[0] for r in await cur.fetchall()]


def _venue_values(venue: Venue) -> tuple[Any, ...]:
    return (
        venue.name,
        venue.address,
        venue.city,
        venue.region,
        venue.country_code.upper(),
        venue.latitude,
        venue.longitude,
        venue.time_zone or "UTC",
        Jsonb(venue.seat_map.to_document()),
    )


def _event_values(event: Event) -> tuple[Any, ...]:
    q = event.queue_policy
    return (
        event.name,
        event.description,
        event.type,
        event.venue_id,
        event.performer_id,
        event.start_time,
        event.end_time,
        event.on_sale_time,
        q.enabled,
        q.admission_rate_per_minute,
        q.max_active_users,
        q.admission_ttl_seconds,
        event.max_tickets_per_user,
        event.currency,
    )


async def _fetch_venue(conn: AsyncConnection, venue_id: str) -> Venue:
    cur = await conn.execute(f"SELECT {_VENUE_COLUMNS} FROM venues v WHERE v.id = %s", (venue_id,))
    row = await cur.fetchone()
    if row is None:
        raise _venue_not_found(venue_id)
    return _venue(row)


async def _fetch_performer(conn: AsyncConnection, performer_id: str) -> Performer:
    cur = await conn.execute(
        f"SELECT {_PERFORMER_COLUMNS} FROM performers p WHERE p.id = %s", (performer_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise _performer_not_found(performer_id)
    return _performer(row)


async def _fetch_event(conn: AsyncConnection, event_id: str) -> Event:
    cur = await conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events e WHERE e.id = %s", (event_id,))
    row = await cur.fetchone()
    if row is None:
        raise _event_not_found(event_id)
    return _event(row)


def _event_not_found(event_id: str) -> NotFound:
    return NotFound(
        f"no event with id {event_id}",
        reason=Reason.EVENT_NOT_FOUND,
        metadata={"event_id": event_id},
    )


def _venue_not_found(venue_id: str) -> NotFound:
    return NotFound(
        f"no venue with id {venue_id}",
        reason=Reason.VENUE_NOT_FOUND,
        metadata={"venue_id": venue_id},
    )


def _performer_not_found(performer_id: str) -> NotFound:
    return NotFound(
        f"no performer with id {performer_id}",
        reason=Reason.PERFORMER_NOT_FOUND,
        metadata={"performer_id": performer_id},
    )


def _missing_reference(exc: errors.ForeignKeyViolation) -> NotFound:
    constraint = exc.diag.constraint_name or ""
    if "venue" in constraint:
        return NotFound("the venue does not exist", reason=Reason.VENUE_NOT_FOUND)
    if "performer" in constraint:
        return NotFound("the performer does not exist", reason=Reason.PERFORMER_NOT_FOUND)
    return NotFound(f"a referenced record does not exist ({constraint})")
