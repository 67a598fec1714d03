"""Booking's Postgres adapter: where every sale is decided.

A hold is taken by the schema's ``hold_tickets`` function in one statement (the user's lock,
the sale's checks, then one conditional UPDATE over rows locked ``FOR UPDATE SKIP LOCKED`` and
re-checked with ``ticket_is_available``): two buyers racing for a seat cannot both
match, and a buyer never waits behind another's lock during a surge (a locked seat is simply
reported taken). Selling a held seat requires it to still be this buyer's hold for this
booking, so a payment that outlived its hold can only end in a refund, never a double sale.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import AsyncConnection, errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from booking_svc.adapters.hold_batch import BestOrder, HoldBatcher, Order
from booking_svc.domain import (
    BestDecision,
    BestSeatsOrder,
    Booking,
    BookingStatus,
    ConfirmOutcome,
    ConfirmStart,
    HeldTicket,
    Hold,
    HoldDecision,
    HoldOutcome,
    Money,
    Payment,
    PaymentRecord,
    PaymentStatus,
    Reservation,
    ReservationState,
    ReserveBestAvailable,
    ReserveTickets,
    Sale,
    SaleWindow,
)
from booking_svc.seat_picture import SeatPicture, SeatTicket, SectionPlan
from ticketing_common.errors import Unavailable
from ticketing_common.idempotency import run_once

# One statement: the user's lock, the checks and the conditional update (migration 0006).
_HOLD_TICKETS = """
    SELECT outcome, event_id::text, on_sale_time, start_time, queue_enabled,
           max_tickets_per_user, already, held_ids::text[], held_prices, held_currencies,
           held_expire_times
    FROM hold_tickets(%s, %s::uuid[], %s, %s::uuid)
"""


def _hold_params(
    user_id: str, ticket_ids: Sequence[str], duration: dt.timedelta, admitted_event: str | None
) -> tuple[Any, ...]:
    return (user_id, list(ticket_ids), duration, admitted_event)


def _decision(row: Sequence[Any] | None) -> HoldDecision:
    assert row is not None
    outcome, event_id, on_sale, start, queue, cap, already, ids, prices, currencies, expiries = row
    window = SaleWindow(event_id, on_sale, start, queue, cap) if on_sale is not None else None
    holds = (
        [Hold(*h) for h in zip(ids, prices, currencies, expiries, strict=True)]
        if outcome == HoldOutcome.HELD.value
        else []
    )
    return HoldDecision(HoldOutcome(outcome), window, int(already or 0), holds, list(ids or []))


# One statement: the user's lock, the checks, the pick and the hold (migrations 0007, 0010,
# 0014).
_HOLD_BEST = """
    SELECT outcome, event_id::text, on_sale_time, start_time, queue_enabled,
           max_tickets_per_user, already, held_ids::text[], held_prices, held_currencies,
           held_expire_times, seats_remaining
    FROM hold_best_available(%s, %s::uuid, %s, %s, %s, %s, %s::uuid, %s)
"""


# Many single-seat orders in one statement (group commit, migration 0012): each order decided by
# hold_tickets on its own, each answer tagged with the order's index (1-based).
_HOLD_BATCH = """
    SELECT req, outcome, event_id::text, on_sale_time, start_time, queue_enabled,
           max_tickets_per_user, already, held_ids::text[], held_prices, held_currencies,
           held_expire_times
    FROM hold_tickets_batch(%s::text[], %s::integer[], %s::uuid[], %s, %s::uuid[])
"""


def _batch_params(orders: Sequence[Order]) -> tuple[Any, ...]:
    return (
        [user for user, _, _, _, _ in orders],
        [len(ids) for _, ids, _, _, _ in orders],
        [ticket for _, ids, _, _, _ in orders for ticket in ids],
        orders[0][2],
        [admitted for _, _, _, admitted, _ in orders],
    )


# The same with blocks proposed by the process's seat picture among the orders (migration
# 0018): a proposed block that holds one of its buyer's own seats is refused, not re-held.
_HOLD_PICKED_BATCH = """
    SELECT req, outcome, event_id::text, on_sale_time, start_time, queue_enabled,
           max_tickets_per_user, already, held_ids::text[], held_prices, held_currencies,
           held_expire_times
    FROM hold_picked_seats_batch(%s::text[], %s::integer[], %s::uuid[], %s, %s::uuid[],
                                 %s::boolean[])
"""


def _picked_batch_params(orders: Sequence[Order]) -> tuple[Any, ...]:
    return (*_batch_params(orders), [picked for _, _, _, _, picked in orders])


# A picture of an event's seats (booking_svc/seat_picture.py): the event's cap and seat map,
# then every ticket with whether it is available now.
_PICTURE_EVENT = """
    SELECT e.max_tickets_per_user, v.seat_map
    FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = %s::uuid
"""
_PICTURE_TICKETS = """
    SELECT t.id::text, t.section, t.row_label, t.seat_label,
           ticket_is_available(t.status, t.hold_expire_time)
    FROM tickets t WHERE t.event_id = %s::uuid
"""
_FREE_IN_ROW = """
    SELECT t.id::text FROM tickets t
    WHERE t.event_id = %s::uuid AND t.section = %s AND t.row_label = %s
      AND ticket_is_available(t.status, t.hold_expire_time)
"""
_FREE_IN_EVENT = """
    SELECT t.id::text FROM tickets t
    WHERE t.event_id = %s::uuid AND ticket_is_available(t.status, t.hold_expire_time)
"""


def _section_plans(seat_map: Any) -> list[SectionPlan]:
    plans = []
    for section in (seat_map or {}).get("sections", []):
        standing = "standing_capacity" in section
        rows = tuple(str(r.get("label", "")) for r in section.get("rows", []) or [])
        plans.append(
            SectionPlan(
                str(section.get("name", "")),
                str(section.get("price_tier", "")),
                () if standing else rows,
                standing,
            )
        )
    return plans


def _batch_decisions(orders: Sequence[Order], rows: Sequence[Sequence[Any]]) -> list[HoldDecision]:
    by_order = {int(row[0]): _decision(row[1:]) for row in rows}
    return [by_order[i + 1] for i in range(len(orders))]


def _best_params(
    user_id: str, order: BestSeatsOrder, duration: dt.timedelta, admitted_event: str | None
) -> tuple[Any, ...]:
    return (
        user_id,
        order.event_id,
        order.quantity,
        order.price_tier,
        order.section,
        duration,
        admitted_event,
        order.seated_only,
    )


# Many "best available" orders in one statement (migrations 0012, 0015), as _HOLD_BATCH.
_HOLD_BEST_BATCH = """
    SELECT req, outcome, event_id::text, on_sale_time, start_time, queue_enabled,
           max_tickets_per_user, already, held_ids::text[], held_prices, held_currencies,
           held_expire_times, seats_remaining
    FROM hold_best_available_batch(%s::text[], %s::uuid[], %s::integer[], %s::text[],
                                   %s::text[], %s, %s::uuid[], %s::boolean[])
"""


def _best_batch_params(orders: Sequence[BestOrder]) -> tuple[Any, ...]:
    return (
        [user for user, _, _, _ in orders],
        [order.event_id for _, order, _, _ in orders],
        [order.quantity for _, order, _, _ in orders],
        [order.price_tier for _, order, _, _ in orders],
        [order.section for _, order, _, _ in orders],
        orders[0][2],
        [admitted for _, _, _, admitted in orders],
        [order.seated_only for _, order, _, _ in orders],
    )


def _best_decision(row: Sequence[Any] | None) -> BestDecision:
    assert row is not None
    return BestDecision(_decision(row[:11]), int(row[11] or 0))


_BOOKING_SELECT = """
    SELECT b.id::text, b.user_id, b.event_id::text, b.status, b.total_minor, b.currency,
           coalesce(array_agg(bt.ticket_id::text ORDER BY bt.ticket_id)
                    FILTER (WHERE bt.ticket_id IS NOT NULL), '{}'),
           b.create_time, b.confirm_time,
           p.id::text, p.provider_payment_id, p.status, p.refund_id, p.failure_reason
    FROM bookings b
    LEFT JOIN booking_tickets bt ON bt.booking_id = b.id
    LEFT JOIN LATERAL (
        SELECT * FROM payments WHERE booking_id = b.id ORDER BY create_time DESC LIMIT 1
    ) p ON true
"""
_BOOKING_GROUP = (
    " GROUP BY b.id, p.id, p.provider_payment_id, p.status, p.refund_id, p.failure_reason"
)


# A confirm's phases, one statement each (migration 0017): the checks, the pending booking and
# its payment attempt; the payment's outcome; the sale.
_CONFIRM_BEGIN = """
    SELECT outcome, event_id::text, booking_id::text, payment_id::text, payment_key,
           provider_payment_id, payment_status, total_minor, currency, ticket_ids::text[],
           ticket_events::text[], ticket_statuses, ticket_holders, ticket_expire_times,
           ticket_prices, ticket_currencies
    FROM confirm_begin(%s, %s::uuid[], %s, %s)
"""

_RECORD_PAYMENT = """
    UPDATE payments SET provider_payment_id = coalesce(%s, provider_payment_id),
        status = %s, failure_reason = nullif(%s, '')
    WHERE id = %s
"""

_CONFIRM_SELL = "SELECT * FROM confirm_sell(%s)"


def _confirm_start(row: Sequence[Any] | None) -> ConfirmStart:
    assert row is not None
    outcome, event_id, booking_id, payment_id, key, provider_id, status, total, currency = row[:9]
    tickets = [HeldTicket(*t) for t in zip(*row[9:16], strict=True)]
    payment = (
        PaymentRecord(payment_id, booking_id, provider_id, PaymentStatus(status))
        if payment_id
        else None
    )
    return ConfirmStart(
        ConfirmOutcome(outcome),
        event_id,
        tickets,
        payment=payment,
        idempotency_key=key or "",
        total=Money(currency, int(total)) if payment_id else None,
    )


def _booking(row: Sequence[Any]) -> Booking:
    """A row of ``_BOOKING_SELECT``: the booking, its tickets and its latest payment."""
    payment_id, provider_payment_id, payment_status, refund_id, failure_reason = row[9:14]
    payment = None
    if payment_id:
        payment = Payment(
            payment_id,
            provider_payment_id,
            PaymentStatus(payment_status),
            refund_id,
            failure_reason,
        )
    return Booking(
        id=row[0],
        user_id=row[1],
        event_id=row[2],
        status=BookingStatus(row[3]),
        total=Money(row[5], row[4]),
        ticket_ids=tuple(row[6]),
        create_time=row[7],
        confirm_time=row[8],
        payment=payment,
    )


# The AIP-155 replay store keeps a reservation as JSON, and tells requests apart by a hash of
# the command (every field of it, as the buyer sent it).
def _fingerprint(command: ReserveTickets | ReserveBestAvailable) -> bytes:
    fields = dataclasses.asdict(command)
    return json.dumps([type(command).__name__, fields], sort_keys=True).encode()


def _encode(reservation: Reservation) -> bytes:
    total = reservation.total
    return json.dumps(
        {
            "ticket_ids": list(reservation.ticket_ids),
            "event_id": reservation.event_id,
            "user_id": reservation.user_id,
            "state": reservation.state.value,
            "expire_time": reservation.expire_time.isoformat() if reservation.expire_time else None,
            "total": [total.currency, total.amount_minor] if total else None,
        }
    ).encode()


def _decode(payload: bytes) -> Reservation:
    data = json.loads(payload)
    expire, total = data["expire_time"], data["total"]
    return Reservation(
        ticket_ids=tuple(data["ticket_ids"]),
        event_id=data["event_id"],
        user_id=data["user_id"],
        state=ReservationState(data["state"]),
        expire_time=dt.datetime.fromisoformat(expire) if expire else None,
        total=Money(total[0], int(total[1])) if total else None,
    )


@contextmanager
def _unavailable_when_down() -> Iterator[None]:
    try:
        yield
    except PoolTimeout as exc:
        raise Unavailable("the booking database is not reachable right now") from exc
    except (errors.LockNotAvailable, errors.QueryCanceled) as exc:
        raise Unavailable("the booking database is too busy right now; retry") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable("the booking database is not reachable right now") from exc


class BookingRepository:
    def __init__(self, pool: AsyncConnectionPool, *, group_commit: bool = True) -> None:
        self._pool = pool
        self._group_commit = group_commit
        self.batcher: HoldBatcher[Order, HoldDecision] = HoldBatcher(
            self._hold_one, self._hold_many
        )
        self.best_batcher: HoldBatcher[BestOrder, BestDecision] = HoldBatcher(
            self._best_one, self._best_many
        )

    @asynccontextmanager
    async def transaction(self, *, pipelined: bool = False) -> AsyncIterator[BookingTx]:
        """A transaction; ``pipelined`` sends statements without waiting for each answer
        (BEGIN travels with the first query), for the hot reserve path."""
        with _unavailable_when_down():
            async with self._pool.connection() as conn:
                if pipelined:
                    async with conn.pipeline(), conn.transaction():
                        yield BookingTx(conn)
                else:
                    async with conn.transaction():
                        yield BookingTx(conn)

    async def booking(self, booking_id: str) -> Booking | None:
        async with self.transaction() as tx:
            return await tx.booking(booking_id)

    async def hold_tickets(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        """A hold as one statement in its own transaction, one round trip; with group commit,
        concurrent holds share the statement (``adapters/hold_batch.py``)."""
        order = (user_id, ticket_ids, duration, admitted_event, False)
        if self._group_commit:
            return await self.batcher.hold(order)
        return await self._hold_one(order)

    async def hold_picked(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        """A block proposed by a seat picture, held like single seats (the same batches), but
        refused if it holds one of the user's own seats already (migration 0018)."""
        order = (user_id, ticket_ids, duration, admitted_event, True)
        if self._group_commit:
            return await self.batcher.hold(order)
        return await self._hold_one(order)

    async def _hold_one(self, order: Order) -> HoldDecision:
        if order[4]:
            return (await self._hold_many([order]))[0]
        return _decision(await self._one_statement(_HOLD_TICKETS, _hold_params(*order[:4])))

    async def _hold_many(self, orders: Sequence[Order]) -> list[HoldDecision]:
        if any(picked for *_, picked in orders):
            query, params = _HOLD_PICKED_BATCH, _picked_batch_params(orders)
        else:
            query, params = _HOLD_BATCH, _batch_params(orders)
        rows = await self._one_statement(query, params, every_row=True)
        return _batch_decisions(orders, rows)

    async def seat_picture(self, event_id: str) -> SeatPicture | None:
        """The event's seats as they are now, for "best available"; None if no such event."""
        with _unavailable_when_down():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_PICTURE_EVENT, (event_id,))
                event = await cur.fetchone()
                if event is None:
                    await conn.rollback()
                    return None
                cur = await conn.execute(_PICTURE_TICKETS, (event_id,))
                tickets = [SeatTicket(*row) for row in await cur.fetchall()]
                await conn.rollback()
        return SeatPicture(
            event_id, _section_plans(event[1]), tickets, max_tickets_per_user=int(event[0])
        )

    async def free_seat_ids(self, event_id: str, place: tuple[str, str] | None) -> list[str]:
        """The ids of the event's available tickets now, of one (section, row) or all."""
        query, params = (
            (_FREE_IN_EVENT, (event_id,)) if place is None else (_FREE_IN_ROW, (event_id, *place))
        )
        with _unavailable_when_down():
            async with self._pool.connection() as conn:
                cur = await conn.execute(query, params)
                ids = [row[0] for row in await cur.fetchall()]
                await conn.rollback()
        return ids

    async def _one_statement(self, query: Any, params: Any, *, every_row: bool = False) -> Any:
        """The first row (or ``every_row``) of one statement run in its own transaction
        (autocommit: no BEGIN, no COMMIT). The pool's connections are put back as they were
        lent."""
        with _unavailable_when_down():
            async with self._pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    cur = await conn.execute(query, params)
                    return await (cur.fetchall() if every_row else cur.fetchone())
                finally:
                    await conn.set_autocommit(False)

    async def hold_best_available(
        self,
        user_id: str,
        order: BestSeatsOrder,
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> BestDecision:
        """A "best available" hold as one statement in its own transaction, one round trip;
        with group commit, concurrent ones share the statement."""
        best = (user_id, order, duration, admitted_event)
        if self._group_commit:
            return await self.best_batcher.hold(best)
        return await self._best_one(best)

    async def _best_one(self, best: BestOrder) -> BestDecision:
        return _best_decision(await self._one_statement(_HOLD_BEST, _best_params(*best)))

    async def _best_many(self, orders: Sequence[BestOrder]) -> list[BestDecision]:
        rows = await self._one_statement(
            _HOLD_BEST_BATCH, _best_batch_params(orders), every_row=True
        )
        by_order = {int(row[0]): _best_decision(row[1:]) for row in rows}
        return [by_order[i + 1] for i in range(len(orders))]

    async def begin_confirm(
        self, user_id: str, ticket_ids: Sequence[str], request_id: str, payment_method_id: str
    ) -> ConfirmStart:
        """Phase 1 of a confirm in one statement (``confirm_begin``), committed; a replay of a
        finished request_id reads its booking too."""
        params = (user_id, list(ticket_ids), request_id or None, payment_method_id)
        row = await self._one_statement(_CONFIRM_BEGIN, params)
        start = _confirm_start(row)
        if start.outcome is ConfirmOutcome.FINISHED:
            booking = await self.booking(row[2])
            return dataclasses.replace(start, booking=booking)
        return start

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None:
        """Phase 2: the provider's answer, one statement, committed."""
        params = (provider_payment_id, status.value, failure_reason, payment_id)
        with _unavailable_when_down():
            async with self._pool.connection() as conn:
                await conn.set_autocommit(True)
                try:
                    await conn.execute(_RECORD_PAYMENT, params)
                finally:
                    await conn.set_autocommit(False)

    async def sell(self, booking_id: str) -> Sale:
        """Phase 3 in one statement (``confirm_sell``), committed."""
        row = await self._one_statement(_CONFIRM_SELL, (booking_id,))
        assert row is not None
        return Sale(int(row[0]), int(row[1]), _booking(row[2:]) if row[2] else None)

    async def bookings_of(
        self, user_id: str, before: tuple[str, str] | None, limit: int
    ) -> list[Booking]:
        clause, params = "b.user_id = %s", [user_id]
        if before is not None:
            clause += " AND (b.create_time, b.id) < (%s::timestamptz, %s::uuid)"
            params.extend(before)
        async with self.transaction() as tx:
            cur = await tx.conn.execute(
                f"{_BOOKING_SELECT} WHERE {clause} {_BOOKING_GROUP}"
                " ORDER BY b.create_time DESC, b.id DESC LIMIT %s",
                [*params, limit],
            )
            return [_booking(r) for r in await cur.fetchall()]


class BookingTx:
    """Statements inside one transaction."""

    def __init__(self, conn: AsyncConnection[Any]) -> None:
        self.conn = conn

    async def once(
        self,
        *,
        user_id: str,
        method: str,
        request: ReserveTickets | ReserveBestAvailable,
        action: Callable[[], Awaitable[Reservation]],
    ) -> Reservation:
        """``action`` once per (user, method, request_id), within this transaction."""

        async def run() -> bytes:
            return _encode(await action())

        payload = await run_once(
            self.conn,
            user_id=user_id,
            method=method,
            request_id=request.request_id,
            request=_fingerprint(request),
            action=run,
        )
        return _decode(payload)

    async def hold_tickets(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        """The ``hold_tickets`` function inside this transaction (with an idempotency claim)."""
        cur = await self.conn.execute(
            _HOLD_TICKETS, _hold_params(user_id, ticket_ids, duration, admitted_event)
        )
        return _decision(await cur.fetchone())

    async def hold_picked(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        """A proposed block (migration 0018) inside this transaction."""
        order = (user_id, ticket_ids, duration, admitted_event, True)
        cur = await self.conn.execute(_HOLD_PICKED_BATCH, _picked_batch_params([order]))
        return _batch_decisions([order], await cur.fetchall())[0]

    async def hold_best_available(
        self,
        user_id: str,
        order: BestSeatsOrder,
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> BestDecision:
        """The ``hold_best_available`` function inside this transaction (with an idempotency
        claim)."""
        cur = await self.conn.execute(
            _HOLD_BEST, _best_params(user_id, order, duration, admitted_event)
        )
        return _best_decision(await cur.fetchone())

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Give back the user's holds; returns (ticket id, event id) of what was released."""
        cur = await self.conn.execute(
            """
            UPDATE tickets SET status = 'available', holder_user_id = NULL,
                hold_expire_time = NULL, booking_id = NULL
            WHERE id = ANY(%s::uuid[]) AND status = 'held' AND holder_user_id = %s
            RETURNING id::text, event_id::text
            """,
            (list(ticket_ids), user_id),
        )
        return [(r[0], r[1]) for r in await cur.fetchall()]

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None:
        await self.conn.execute(
            _RECORD_PAYMENT, (provider_payment_id, status.value, failure_reason, payment_id)
        )

    async def mark_refunded(self, booking_id: str, payment_id: str, refund_id: str) -> list[str]:
        """After a lost hold: the booking is refunded and any seat it still holds goes back."""
        await self.conn.execute(
            "UPDATE payments SET status = 'refunded', refund_id = %s WHERE id = %s",
            (refund_id, payment_id),
        )
        await self.conn.execute(
            "UPDATE bookings SET status = 'refunded', confirm_time = coalesce(confirm_time, now())"
            " WHERE id = %s",
            (booking_id,),
        )
        cur = await self.conn.execute(
            """
            UPDATE tickets SET status = 'available', holder_user_id = NULL,
                hold_expire_time = NULL, booking_id = NULL
            WHERE booking_id = %s AND status = 'held' RETURNING id::text
            """,
            (booking_id,),
        )
        return [r[0] for r in await cur.fetchall()]

    async def payment_by_provider_id(self, provider_payment_id: str) -> PaymentRecord | None:
        return await self._payment("provider_payment_id = %s", provider_payment_id)

    async def payment_by_booking(self, booking_id: str) -> PaymentRecord | None:
        """The booking's latest payment."""
        return await self._payment("booking_id = %s", booking_id)

    async def _payment(self, clause: str, value: str) -> PaymentRecord | None:
        cur = await self.conn.execute(
            "SELECT id::text, booking_id::text, provider_payment_id, status FROM payments"
            f" WHERE {clause} ORDER BY create_time DESC LIMIT 1",
            (value,),
        )
        row = await cur.fetchone()
        return PaymentRecord(row[0], row[1], row[2], PaymentStatus(row[3])) if row else None

    async def booking(self, booking_id: str) -> Booking | None:
        cur = await self.conn.execute(
            f"{_BOOKING_SELECT} WHERE b.id = %s {_BOOKING_GROUP}", (booking_id,)
        )
        row = await cur.fetchone()
        return _booking(row) if row else None
