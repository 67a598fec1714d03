"""Booking's use cases (booking_svc/service.py) against in-memory fakes of their ports
(booking_svc/ports.py), for the rules a buyer notices: the per-user and per-order caps, a
retried request_id answered the same without a second hold or charge, the waiting queue's
admission and the sale's opening time, a confirm that charges once and sells, a declined card
that leaves the hold and sells nothing, a payment that outlived its hold refunded, best
available seats side by side or NO_ADJACENT_SEATS, and a cancel that gives the seats back.

The fake store decides holds the way migration 0006/0007's functions do (the outcome codes and
the facts that explain them), and a confirm's phases the way 0017's confirm_begin and
confirm_sell do; the integration tests (tests/integration/test_booking.py,
test_best_available.py) hold the real Postgres to the same answers."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from booking_svc.domain import (
    MAX_TICKETS_PER_ORDER,
    BestDecision,
    BestSeatsOrder,
    Booking,
    BookingStatus,
    CancelReservation,
    ConfirmBooking,
    ConfirmOutcome,
    ConfirmStart,
    HeldTicket,
    Hold,
    HoldDecision,
    HoldOutcome,
    Money,
    Payment,
    PaymentEvent,
    PaymentEventKind,
    PaymentOutcome,
    PaymentRecord,
    PaymentResult,
    PaymentStatus,
    Reservation,
    ReservationState,
    ReserveBestAvailable,
    ReserveTickets,
    Sale,
    SaleWindow,
    ensure_payable,
    payment_idempotency_key,
)
from booking_svc.ports import WebhookSignatureInvalid
from booking_svc.service import BookingService
from ticketing_common import admission
from ticketing_common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Reason,
    ResourceExhausted,
)

NOW = dt.datetime(2031, 5, 1, 12, tzinfo=dt.UTC)
HOLD = dt.timedelta(minutes=10)
KEY = "unit-test-admission-key-of-32-bytes-or-more"
CARD, DECLINED_CARD = "pm_card_visa", "pm_card_chargeDeclined"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


@dataclasses.dataclass
class Seat:
    id: str
    event_id: str
    row: str
    number: int
    price_minor: int = 5000
    currency: str = "EUR"
    status: str = "available"
    holder: str | None = None
    hold_expire_time: dt.datetime | None = None
    booking_id: str | None = None


@dataclasses.dataclass
class State:
    """Everything the fake Postgres keeps; a transaction that fails puts it back as it was."""

    seats: dict[str, Seat] = dataclasses.field(default_factory=dict)
    bookings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    replays: dict[tuple[str, str, str], tuple[object, Reservation]] = dataclasses.field(
        default_factory=dict
    )


class FakeStore:
    """BookingStore in memory, with the hold rules of the schema's functions."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.state = State()
        self.events: dict[str, SaleWindow] = {}
        self.holds_attempted = 0  # hold statements run, committed or not

    # --- setup --------------------------------------------------------------------------------

    def add_event(
        self,
        *,
        rows: Sequence[int] = (4,),
        cap: int = 4,
        queue: bool = False,
        on_sale: dt.datetime = NOW - dt.timedelta(days=1),
    ) -> tuple[str, list[str]]:
        event_id = str(uuid.uuid4())
        self.events[event_id] = SaleWindow(
            event_id, on_sale, NOW + dt.timedelta(days=30), queue, cap
        )
        ids = []
        for r, count in enumerate(rows):
            for n in range(1, count + 1):
                seat = Seat(str(uuid.uuid4()), event_id, chr(ord("A") + r), n)
                self.state.seats[seat.id] = seat
                ids.append(seat.id)
        return event_id, ids

    def seat(self, ticket_id: str) -> Seat:
        return self.state.seats[ticket_id]

    # --- the hold rules ---------------------------------------------------------------------

    def _live(self, seat: Seat) -> bool:
        return seat.status == "held" and (
            seat.hold_expire_time is not None and seat.hold_expire_time > self.clock.now
        )

    def _obtainable(self, seat: Seat, user_id: str) -> bool:
        if seat.status == "available" or (seat.status == "held" and not self._live(seat)):
            return True
        return self._live(seat) and seat.holder == user_id and seat.booking_id is None

    def _mine(self, event_id: str, user_id: str, besides: Sequence[str]) -> int:
        return sum(
            1
            for s in self.state.seats.values()
            if s.event_id == event_id
            and s.holder == user_id
            and s.id not in besides
            and (s.status == "booked" or self._live(s))
        )

    def _check(self, window: SaleWindow, user_id: str, admitted: str | None) -> HoldOutcome | None:
        if self.clock.now < window.on_sale_time:
            return HoldOutcome.SALE_NOT_OPEN
        if self.clock.now >= window.start_time:
            return HoldOutcome.SALE_CLOSED
        if window.queue_enabled and admitted != window.event_id:
            return HoldOutcome.NOT_ADMITTED
        return None

    def _take(self, user_id: str, seats: Sequence[Seat], duration: dt.timedelta) -> list[Hold]:
        until = self.clock.now + duration
        for seat in seats:
            seat.status, seat.holder, seat.hold_expire_time = "held", user_id, until
            seat.booking_id = None
        return [Hold(s.id, s.price_minor, s.currency, until) for s in seats]

    async def hold_tickets(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        self.holds_attempted += 1
        seats = [self.state.seats.get(t) for t in ticket_ids]
        if any(s is None for s in seats):
            return HoldDecision(HoldOutcome.TICKET_NOT_FOUND, None, 0, [], [])
        found = [s for s in seats if s is not None]
        if len({s.event_id for s in found}) != 1:
            return HoldDecision(HoldOutcome.MIXED_EVENTS, None, 0, [], [])
        window = self.events[found[0].event_id]
        already = self._mine(window.event_id, user_id, ticket_ids)
        refused = self._check(window, user_id, admitted_event)
        if refused is None and already + len(found) > window.max_tickets_per_user:
            refused = HoldOutcome.LIMIT_EXCEEDED
        if refused is not None:
            return HoldDecision(refused, window, already, [], [])
        obtainable = [s.id for s in found if self._obtainable(s, user_id)]
        if len(obtainable) < len(found):
            return HoldDecision(HoldOutcome.TICKET_UNAVAILABLE, window, already, [], obtainable)
        holds = self._take(user_id, found, duration)
        return HoldDecision(HoldOutcome.HELD, window, already, holds, obtainable)

    async def hold_best_available(
        self,
        user_id: str,
        order: BestSeatsOrder,
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> BestDecision:
        self.holds_attempted += 1
        window = self.events.get(order.event_id)
        if window is None:
            return BestDecision(HoldDecision(HoldOutcome.EVENT_NOT_FOUND, None, 0, [], []), 0)
        already = self._mine(window.event_id, user_id, [])
        refused = self._check(window, user_id, admitted_event)
        if refused is None and order.quantity > window.max_tickets_per_user:
            refused = HoldOutcome.QUANTITY_OVER_LIMIT
        if refused is None and already + order.quantity > window.max_tickets_per_user:
            refused = HoldOutcome.LIMIT_EXCEEDED
        free = [
            s
            for s in self.state.seats.values()
            if s.event_id == order.event_id
            and (s.status == "available" or (s.status == "held" and not self._live(s)))
        ]
        if refused is not None:
            return BestDecision(HoldDecision(refused, window, already, [], []), len(free))
        by_row: dict[str, list[Seat]] = {}
        for seat in sorted(free, key=lambda s: (s.row, s.number)):
            by_row.setdefault(seat.row, []).append(seat)
        for row in by_row.values():
            for i in range(len(row) - order.quantity + 1):
                block = row[i : i + order.quantity]
                if block[-1].number - block[0].number == order.quantity - 1:
                    holds = self._take(user_id, block, duration)
                    decision = HoldDecision(HoldOutcome.HELD, window, already, holds, [])
                    return BestDecision(decision, len(free) - order.quantity)
        decision = HoldDecision(HoldOutcome.NO_ADJACENT_SEATS, window, already, [], [])
        return BestDecision(decision, len(free))

    # --- transactions and reads ---------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self, *, pipelined: bool = False) -> AsyncIterator[FakeTx]:
        before = copy.deepcopy(self.state)
        try:
            yield FakeTx(self)
        except BaseException:
            self.state = before  # rolled back
            raise

    async def booking(self, booking_id: str) -> Booking | None:
        return self.booking_now(booking_id)

    async def bookings_of(
        self, user_id: str, before: tuple[str, str] | None, limit: int
    ) -> list[Booking]:
        mine = [b for b in self.state.bookings.values() if b["user_id"] == user_id]
        mine.sort(key=lambda b: (b["create_time"], b["id"]), reverse=True)
        if before is not None:
            cursor = (dt.datetime.fromisoformat(before[0]), before[1])
            mine = [b for b in mine if (b["create_time"], b["id"]) < cursor]
        return [b for b in (self.booking_now(r["id"]) for r in mine[:limit]) if b is not None]

    # --- a confirm's phases, each its own transaction (migration 0017's functions) ---------

    async def begin_confirm(
        self, user_id: str, ticket_ids: Sequence[str], request_id: str, payment_method_id: str
    ) -> ConfirmStart:
        async with self.transaction() as tx:
            seats = sorted(
                (self.state.seats[t] for t in ticket_ids if t in self.state.seats),
                key=lambda s: s.id,
            )
            tickets = [
                HeldTicket(
                    s.id,
                    s.event_id,
                    s.status,
                    s.holder,
                    s.hold_expire_time,
                    s.price_minor,
                    s.currency,
                )
                for s in seats
            ]
            event_id = tickets[0].event_id if tickets else None
            booking, paid = None, False
            if request_id:
                booking = await tx.booking_for_request(user_id, request_id)
                if booking is not None and booking.status is not BookingStatus.PENDING:
                    return ConfirmStart(
                        ConfirmOutcome.FINISHED, booking.event_id, tickets, booking=booking
                    )
                paid = booking is not None and self._paid(booking.id)
            pointed = {s.booking_id for s in seats}
            if booking is None and len(pointed) == 1 and None not in pointed:
                candidate = self.state.bookings.get(str(next(iter(pointed))))
                if (
                    candidate is not None
                    and candidate["user_id"] == user_id
                    and candidate["status"] is BookingStatus.PENDING
                    and sorted(candidate["ticket_ids"]) == [t.id for t in tickets]
                    and (
                        (candidate["request_id"] or "") == request_id or self._paid(candidate["id"])
                    )
                ):
                    booking = self.booking_now(candidate["id"])
                    paid = self._paid(candidate["id"])
            if not paid:
                try:
                    ensure_payable(user_id, tickets, len(ticket_ids), self.clock.now)
                except DomainError:
                    return ConfirmStart(ConfirmOutcome.REFUSED, event_id, tickets)
            booking_id = (
                booking.id
                if booking is not None
                else await tx.create_booking(user_id, str(event_id), tickets, request_id)
            )
            key = payment_idempotency_key(booking_id, payment_method_id)
            total = Money(tickets[0].currency, sum(t.price_minor for t in tickets))
            payment = await tx.start_payment(booking_id, key, total.amount_minor, total.currency)
            return ConfirmStart(
                ConfirmOutcome.PAYABLE,
                event_id,
                tickets,
                payment=payment,
                idempotency_key=key,
                total=total,
            )

    def _paid(self, booking_id: str) -> bool:
        return any(
            p["booking_id"] == booking_id and p["status"] is PaymentStatus.SUCCEEDED
            for p in self.state.payments.values()
        )

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None:
        async with self.transaction() as tx:
            await tx.record_payment(payment_id, provider_payment_id, status, failure_reason)

    async def sell(self, booking_id: str) -> Sale:
        async with self.transaction() as tx:
            sold, wanted, _ = await tx.sell(booking_id)
            return Sale(sold, wanted, await tx.booking(booking_id))

    def booking_now(self, booking_id: str) -> Booking | None:
        row = self.state.bookings.get(booking_id)
        if row is None:
            return None
        attempts = [p for p in self.state.payments.values() if p["booking_id"] == booking_id]
        latest = max(attempts, key=lambda p: p["seq"]) if attempts else None
        payment = (
            Payment(
                latest["id"],
                latest["provider_id"],
                latest["status"],
                latest["refund_id"],
                latest["failure_reason"],
            )
            if latest
            else None
        )
        return Booking(
            row["id"],
            row["user_id"],
            row["event_id"],
            row["status"],
            Money(row["currency"], row["total"]),
            tuple(sorted(row["ticket_ids"])),
            row["create_time"],
            row["confirm_time"],
            payment,
        )


class FakeTx:
    """BookingTransaction over the fake store's state."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    @property
    def _state(self) -> State:
        return self._store.state

    async def hold_tickets(
        self, user_id: str, ticket_ids: Sequence[str], duration: dt.timedelta, admitted: str | None
    ) -> HoldDecision:
        return await self._store.hold_tickets(user_id, ticket_ids, duration, admitted)

    async def hold_best_available(
        self, user_id: str, order: BestSeatsOrder, duration: dt.timedelta, admitted: str | None
    ) -> BestDecision:
        return await self._store.hold_best_available(user_id, order, duration, admitted)

    async def once(
        self,
        *,
        user_id: str,
        method: str,
        request: ReserveTickets | ReserveBestAvailable,
        action: Callable[[], Awaitable[Reservation]],
    ) -> Reservation:
        key = (user_id, method, request.request_id)
        if key in self._state.replays:
            first, answer = self._state.replays[key]
            if first != request:
                raise InvalidArgument(
                    "request_id was already used for a different request",
                    reason=Reason.REQUEST_ID_REUSED,
                )
            return answer
        answer = await action()
        self._state.replays[key] = (request, answer)
        return answer

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> list[tuple[str, str]]:
        released = []
        for ticket_id in ticket_ids:
            seat = self._state.seats.get(ticket_id)
            if seat is not None and seat.status == "held" and seat.holder == user_id:
                seat.status, seat.holder, seat.hold_expire_time = "available", None, None
                seat.booking_id = None
                released.append((seat.id, seat.event_id))
        return released

    async def booking_for_request(self, user_id: str, request_id: str) -> Booking | None:
        for row in self._state.bookings.values():
            if row["user_id"] == user_id and row["request_id"] == request_id:
                return self._store.booking_now(row["id"])
        return None

    async def create_booking(
        self, user_id: str, event_id: str, tickets: Sequence[HeldTicket], request_id: str | None
    ) -> str:
        booking_id = str(uuid.uuid4())
        self._state.bookings[booking_id] = {
            "id": booking_id,
            "user_id": user_id,
            "event_id": event_id,
            "status": BookingStatus.PENDING,
            "total": sum(t.price_minor for t in tickets),
            "currency": tickets[0].currency,
            "ticket_ids": [t.id for t in tickets],
            "create_time": self._store.clock.now
            + dt.timedelta(microseconds=len(self._state.bookings)),
            "confirm_time": None,
            "request_id": request_id or None,
        }
        for ticket in tickets:
            self._state.seats[ticket.id].booking_id = booking_id
        return booking_id

    async def start_payment(
        self, booking_id: str, idempotency_key: str, amount_minor: int, currency: str
    ) -> PaymentRecord:
        for row in self._state.payments.values():
            if row["key"] == idempotency_key:
                return PaymentRecord(row["id"], booking_id, row["provider_id"], row["status"])
        payment_id = str(uuid.uuid4())
        self._state.payments[payment_id] = {
            "id": payment_id,
            "booking_id": booking_id,
            "key": idempotency_key,
            "amount": amount_minor,
            "status": PaymentStatus.REQUIRES_ACTION,
            "provider_id": None,
            "refund_id": None,
            "failure_reason": None,
            "seq": len(self._state.payments),
        }
        return PaymentRecord(payment_id, booking_id, None, PaymentStatus.REQUIRES_ACTION)

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None:
        row = self._state.payments[payment_id]
        row["provider_id"] = provider_payment_id or row["provider_id"]
        row["status"], row["failure_reason"] = status, failure_reason or None

    async def sell(self, booking_id: str) -> tuple[int, int, str | None]:
        row = self._state.bookings.get(booking_id)
        if row is None:
            return 0, 0, None
        wanted = len(row["ticket_ids"])
        if row["status"] is BookingStatus.CONFIRMED:
            return wanted, wanted, row["event_id"]
        if row["status"] is not BookingStatus.PENDING:
            return 0, wanted, row["event_id"]
        seats = [self._state.seats[t] for t in row["ticket_ids"]]
        still = [
            s
            for s in seats
            if s.status == "held" and s.holder == row["user_id"] and s.booking_id == booking_id
        ]
        if len(still) != wanted:
            return len(still), wanted, row["event_id"]
        for seat in seats:
            seat.status, seat.hold_expire_time = "booked", None
        row["status"], row["confirm_time"] = BookingStatus.CONFIRMED, self._store.clock.now
        return wanted, wanted, row["event_id"]

    async def mark_refunded(self, booking_id: str, payment_id: str, refund_id: str) -> list[str]:
        payment = self._state.payments[payment_id]
        payment["status"], payment["refund_id"] = PaymentStatus.REFUNDED, refund_id
        row = self._state.bookings[booking_id]
        row["status"] = BookingStatus.REFUNDED
        row["confirm_time"] = row["confirm_time"] or self._store.clock.now
        back = []
        for seat in self._state.seats.values():
            if seat.booking_id == booking_id and seat.status == "held":
                seat.status, seat.holder, seat.hold_expire_time = "available", None, None
                seat.booking_id = None
                back.append(seat.id)
        return back

    async def payment_by_provider_id(self, provider_payment_id: str) -> PaymentRecord | None:
        for row in self._state.payments.values():
            if row["provider_id"] == provider_payment_id:
                return PaymentRecord(
                    row["id"], row["booking_id"], row["provider_id"], row["status"]
                )
        return None

    async def payment_by_booking(self, booking_id: str) -> PaymentRecord | None:
        rows = [p for p in self._state.payments.values() if p["booking_id"] == booking_id]
        if not rows:
            return None
        row = max(rows, key=lambda p: p["seq"])
        return PaymentRecord(row["id"], booking_id, row["provider_id"], row["status"])

    async def booking(self, booking_id: str) -> Booking | None:
        return self._store.booking_now(booking_id)


class FakeLocks:
    """SeatLocks in memory: owner per seat; ``down`` answers as an unreachable Redis does."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}
        self.down = False

    async def take(
        self, user_id: str, ticket_ids: Sequence[str], *, held: bool = False
    ) -> str | None:
        if self.down:
            return None
        for ticket_id in ticket_ids:
            if self.owners.get(ticket_id, user_id) != user_id:
                return ticket_id
        for ticket_id in ticket_ids:
            self.owners.setdefault(ticket_id, user_id)
        return None

    async def extend(self, user_id: str, ticket_ids: Sequence[str]) -> None:
        return None

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> None:
        for ticket_id in ticket_ids:
            if self.owners.get(ticket_id) == user_id:
                del self.owners[ticket_id]


class FakePayments:
    """Payments in memory; like Stripe, an idempotency key seen before charges nothing new."""

    def __init__(self) -> None:
        self.charges: dict[str, tuple[str, int, str]] = {}  # key -> (intent id, amount, booking)
        self.answers: dict[str, PaymentResult] = {}
        self.refunds: dict[str, str] = {}  # intent id -> refund id
        self.calls = 0  # charge requests sent, whether the provider deduplicated them or not
        self.while_charging: Callable[[], None] = lambda: None

    async def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> PaymentResult:
        self.calls += 1
        if idempotency_key in self.answers:
            return self.answers[idempotency_key]
        intent = f"pi_{len(self.answers) + 1}"
        if payment_method_id == DECLINED_CARD:
            result = PaymentResult(PaymentOutcome.DECLINED, intent, "Your card was declined.")
        else:
            self.while_charging()
            self.charges[idempotency_key] = (intent, amount_minor, metadata["booking_id"])
            result = PaymentResult(PaymentOutcome.SUCCEEDED, intent)
        self.answers[idempotency_key] = result
        return result

    async def refund(self, provider_payment_id: str, idempotency_key: str) -> str:
        return self.refunds.setdefault(provider_payment_id, f"re_{len(self.refunds) + 1}")

    def verify_webhook(self, payload: bytes, signature: str) -> PaymentEvent | None:
        if signature != "t=1,v1=valid":
            raise WebhookSignatureInvalid("no signature matches")
        data = json.loads(payload)
        if data["type"] not in ("succeeded", "failed"):
            return None
        return PaymentEvent(PaymentEventKind(data["type"]), data["id"], data.get("booking_id"))


class FakePages:
    def __init__(self) -> None:
        self.marked: list[str] = []

    async def mark_changed(self, *event_ids: str) -> None:
        self.marked.extend(event_ids)


@dataclasses.dataclass
class World:
    clock: Clock
    store: FakeStore
    locks: FakeLocks
    payments: FakePayments
    pages: FakePages
    service: BookingService

    def money_without_ticket(self) -> list[str]:
        """Charges that neither bought their booking's seats nor were refunded."""
        wrong = []
        for intent, amount, booking_id in self.payments.charges.values():
            booking = self.store.booking_now(booking_id)
            sold = (
                booking is not None
                and booking.status is BookingStatus.CONFIRMED
                and booking.total.amount_minor == amount
                and all(
                    self.store.seat(t).status == "booked"
                    and self.store.seat(t).holder == booking.user_id
                    for t in booking.ticket_ids
                )
            )
            if not sold and intent not in self.payments.refunds:
                wrong.append(intent)
        return wrong


@pytest.fixture
def world() -> World:
    clock = Clock()
    store, locks, payments, pages = FakeStore(clock), FakeLocks(), FakePayments(), FakePages()
    service = BookingService(
        store, locks, payments, pages, admission_key=KEY, hold_duration=HOLD, clock=clock
    )
    return World(clock, store, locks, payments, pages, service)


async def confirm_dies_in(
    step: str, world: World, monkeypatch: pytest.MonkeyPatch, command: ConfirmBooking
) -> None:
    """Ana's confirm, with the booking process dying in ``step`` (a transaction's statement):
    what was committed before stays, that transaction is rolled back."""

    async def died(self: FakeTx, *args: object, **kwargs: object) -> None:
        raise ConnectionError(f"the booking process died in {step}")

    with monkeypatch.context() as patch:
        patch.setattr(FakeTx, step, died)
        with pytest.raises(ConnectionError):
            await world.service.confirm("ana", command)


def token(user_id: str, event_id: str) -> str:
    expire = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    return admission.sign(KEY, user_id=user_id, event_id=event_id, expire_time=expire)


# --- reserve -----------------------------------------------------------------------------------


async def test_a_reservation_holds_the_seats_for_the_hold_duration_at_their_price(world):
    event_id, seats = world.store.add_event()
    got = await world.service.reserve("ana", ReserveTickets((seats[0], seats[1].upper())))
    assert got == Reservation(
        (seats[0], seats[1]),
        event_id,
        "ana",
        ReservationState.HELD,
        NOW + HOLD,
        Money("EUR", 10_000),
    )
    assert [world.store.seat(t).holder for t in seats[:2]] == ["ana", "ana"]
    assert world.locks.owners == {seats[0]: "ana", seats[1]: "ana"}
    assert world.pages.marked == [event_id]  # the event page shows them taken at once


async def test_the_per_user_cap_counts_seats_already_held(world):
    _, seats = world.store.add_event(rows=(6,), cap=3)
    await world.service.reserve("ana", ReserveTickets((seats[0], seats[1])))
    with pytest.raises(ResourceExhausted) as err:
        await world.service.reserve("ana", ReserveTickets((seats[2], seats[3])))
    assert err.value.reason == "LIMIT_EXCEEDED"
    assert err.value.metadata == {"limit": "3", "already": "2"}
    assert world.store.seat(seats[2]).status == "available"
    assert seats[2] not in world.locks.owners  # the refused order leaves no lock behind
    other = await world.service.reserve("bea", ReserveTickets((seats[2], seats[3])))
    assert other.ticket_ids == (seats[2], seats[3])


async def test_an_order_over_the_per_order_cap_is_refused_before_any_hold(world):
    _, seats = world.store.add_event(rows=(MAX_TICKETS_PER_ORDER + 1,), cap=50)
    with pytest.raises(ResourceExhausted) as err:
        await world.service.reserve("ana", ReserveTickets(tuple(seats)))
    assert err.value.reason == "LIMIT_EXCEEDED"
    assert world.store.holds_attempted == 0 and world.locks.owners == {}


async def test_a_seat_locked_by_another_buyer_is_refused_without_the_database(world):
    _, seats = world.store.add_event()
    world.locks.owners[seats[0]] = "bea"
    with pytest.raises(FailedPrecondition) as err:
        await world.service.reserve("ana", ReserveTickets((seats[1], seats[0])))
    assert err.value.reason == "TICKET_UNAVAILABLE"
    assert err.value.metadata["ticket_ids"] == seats[0]
    assert world.store.holds_attempted == 0


async def test_with_the_locks_down_the_database_still_refuses_a_taken_seat(world):
    _, seats = world.store.add_event()
    world.locks.down = True
    await world.service.reserve("bea", ReserveTickets((seats[0],)))
    with pytest.raises(FailedPrecondition) as err:
        await world.service.reserve("ana", ReserveTickets((seats[0], seats[1])))
    assert err.value.reason == "TICKET_UNAVAILABLE"
    assert err.value.metadata["ticket_ids"] == seats[0]
    assert world.store.seat(seats[0]).holder == "bea"
    assert world.store.seat(seats[1]).status == "available"  # all or nothing


async def test_a_retried_request_id_gets_the_first_answer_without_a_second_hold(world):
    _, seats = world.store.add_event(cap=2)
    command = ReserveTickets((seats[0],), request_id="r-1")
    first = await world.service.reserve("ana", command)
    world.clock.now += dt.timedelta(minutes=3)
    again = await world.service.reserve("ana", command)
    assert again == first  # the same seats, the same expiry: the first hold, not a new one
    assert world.store.holds_attempted == 1
    assert world.store.seat(seats[0]).hold_expire_time == NOW + HOLD
    with pytest.raises(InvalidArgument) as err:  # the same id for another order
        await world.service.reserve("ana", ReserveTickets((seats[1],), request_id="r-1"))
    assert err.value.reason == "REQUEST_ID_REUSED"
    assert world.store.seat(seats[1]).status == "available"
    # Another user's request ids are their own.
    bea = await world.service.reserve("bea", ReserveTickets((seats[1],), request_id="r-1"))
    assert bea.ticket_ids == (seats[1],)


async def test_a_refused_hold_with_a_request_id_can_be_retried_once_the_seat_is_free(world):
    _, seats = world.store.add_event()
    await world.service.reserve("bea", ReserveTickets((seats[0],)))
    command = ReserveTickets((seats[0],), request_id="r-2")
    with pytest.raises(FailedPrecondition):
        await world.service.reserve("ana", command)
    await world.service.cancel("bea", CancelReservation((seats[0],)))
    got = await world.service.reserve("ana", command)  # the refusal was not stored as the answer
    assert got.ticket_ids == (seats[0],) and world.store.seat(seats[0]).holder == "ana"


async def test_a_queued_sale_needs_an_admission_for_this_user_and_event(world):
    event_id, seats = world.store.add_event(queue=True)
    other_event, _ = world.store.add_event(queue=True)
    refused = {  # the buyer is told what is wrong with what they sent
        "": "join it to get an admission",
        token("bea", event_id): "another user or another event",
        token("ana", other_event): "another user or another event",
        "not-a-token": "not valid",
    }
    for sent, told in refused.items():
        with pytest.raises(PermissionDenied) as err:
            await world.service.reserve("ana", ReserveTickets((seats[0],), admission_token=sent))
        assert err.value.reason == "NOT_ADMITTED"
        assert told in err.value.message, (told, err.value.message)
    assert world.store.seat(seats[0]).status == "available" and world.locks.owners == {}
    admitted = ReserveTickets((seats[0],), admission_token=token("ana", event_id))
    assert (await world.service.reserve("ana", admitted)).event_id == event_id


async def test_before_the_sale_opens_nothing_is_held(world):
    opens = NOW + dt.timedelta(hours=2)
    _, seats = world.store.add_event(on_sale=opens)
    with pytest.raises(FailedPrecondition) as err:
        await world.service.reserve("ana", ReserveTickets((seats[0],)))
    assert err.value.reason == "SALE_NOT_OPEN"
    assert err.value.metadata == {"on_sale_time": opens.isoformat()}
    assert world.store.seat(seats[0]).status == "available" and world.locks.owners == {}
    world.clock.now = opens
    await world.service.reserve("ana", ReserveTickets((seats[0],)))
    assert world.store.seat(seats[0]).holder == "ana"


# --- best available ------------------------------------------------------------------------


async def test_best_available_holds_adjacent_seats_in_one_row(world):
    event_id, seats = world.store.add_event(rows=(3, 3))
    await world.service.reserve("bea", ReserveTickets((seats[1],)))  # A2 taken: A1, A3 apart
    got = await world.service.reserve_best("ana", ReserveBestAvailable(event_id, 2))
    assert got.ticket_ids == (seats[3], seats[4])  # B1, B2
    assert got.total == Money("EUR", 10_000)
    assert world.locks.owners[seats[3]] == "ana"


async def test_best_available_says_no_adjacent_seats_and_how_many_singles_remain(world):
    event_id, seats = world.store.add_event(rows=(3,))
    await world.service.reserve("bea", ReserveTickets((seats[1],)))
    with pytest.raises(FailedPrecondition) as err:
        await world.service.reserve_best("ana", ReserveBestAvailable(event_id, 2))
    assert err.value.reason == "NO_ADJACENT_SEATS"
    assert err.value.metadata == {"seats_remaining": "2", "quantity": "2"}
    assert [world.store.seat(s).status for s in (seats[0], seats[2])] == ["available"] * 2


async def test_best_available_replays_a_request_id_and_refuses_a_bad_event_id(world):
    event_id, _ = world.store.add_event(rows=(6,))
    command = ReserveBestAvailable(event_id, 2, request_id="b-1")
    first = await world.service.reserve_best("ana", command)
    assert await world.service.reserve_best("ana", command) == first
    assert world.store.holds_attempted == 1
    with pytest.raises(InvalidArgument) as err:
        await world.service.reserve_best("ana", ReserveBestAvailable("no-uuid", 2))
    assert err.value.reason == "MALFORMED_ID"
    with pytest.raises(NotFound) as err:
        await world.service.reserve_best("ana", ReserveBestAvailable(str(uuid.uuid4()), 2))
    assert err.value.reason == "EVENT_NOT_FOUND"


# --- cancel --------------------------------------------------------------------------------


async def test_cancel_gives_the_seats_back_to_everyone(world):
    event_id, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0], seats[1])))
    world.pages.marked.clear()
    got = await world.service.cancel("ana", CancelReservation((seats[0], seats[1])))
    assert got == Reservation((seats[0], seats[1]), event_id, "ana", ReservationState.CANCELLED)
    assert world.locks.owners == {} and world.pages.marked == [event_id]
    assert (await world.service.reserve("bea", ReserveTickets((seats[0],)))).user_id == "bea"
    with pytest.raises(NotFound) as err:  # ana holds nothing now
        await world.service.cancel("ana", CancelReservation((seats[0],)))
    assert err.value.reason == "NOT_HOLDER"
    assert world.store.seat(seats[0]).holder == "bea"


# --- confirm -------------------------------------------------------------------------------


async def test_confirm_charges_once_and_sells(world):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0], seats[1])))
    booking = await world.service.confirm("ana", ConfirmBooking((seats[0], seats[1]), CARD))
    assert booking.status is BookingStatus.CONFIRMED
    assert booking.total == Money("EUR", 10_000)
    assert booking.payment is not None and booking.payment.status is PaymentStatus.SUCCEEDED
    assert [world.store.seat(s).status for s in seats[:2]] == ["booked", "booked"]
    assert [amount for _, amount, _ in world.payments.charges.values()] == [10_000]
    assert world.locks.owners == {}  # the sale, not the lock, keeps the seats now
    assert await world.service.get("ana", booking.id) == booking
    with pytest.raises(NotFound):  # another user's booking is invisible
        await world.service.get("bea", booking.id)
    assert world.money_without_ticket() == []


async def test_a_retried_confirm_returns_the_booking_without_a_second_charge(world):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))
    command = ConfirmBooking((seats[0],), CARD, request_id="pay-1")
    first = await world.service.confirm("ana", command)
    again = await world.service.confirm("ana", command)
    assert again == first and len(world.payments.charges) == 1
    # Without a request id, the seat is sold already: nothing more to pay for.
    with pytest.raises(PermissionDenied) as err:
        await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD))
    assert err.value.reason == "NOT_HOLDER"
    assert len(world.payments.charges) == 1


async def test_a_declined_card_sells_nothing_and_keeps_the_hold_for_another_card(world):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))
    with pytest.raises(FailedPrecondition) as err:
        await world.service.confirm("ana", ConfirmBooking((seats[0],), DECLINED_CARD))
    assert err.value.reason == "PAYMENT_DECLINED"
    seat = world.store.seat(seats[0])
    assert (seat.status, seat.holder) == ("held", "ana")
    assert world.payments.charges == {}
    booking = await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD))
    assert booking.status is BookingStatus.CONFIRMED and len(world.payments.charges) == 1
    assert world.money_without_ticket() == []


async def test_a_payment_that_outlives_its_hold_is_refunded_and_the_seat_stays_sold_once(world):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))

    def hold_lapses_and_bea_buys() -> None:  # while the card is being charged
        world.clock.now += HOLD + dt.timedelta(seconds=1)
        seat = world.store.seat(seats[0])
        seat.status, seat.holder, seat.booking_id = "booked", "bea", None

    world.payments.while_charging = hold_lapses_and_bea_buys
    with pytest.raises(FailedPrecondition) as err:
        await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD, request_id="p"))
    assert err.value.reason == "PAYMENT_REFUNDED"
    ((intent, _, booking_id),) = world.payments.charges.values()
    assert err.value.metadata == {"refund_id": world.payments.refunds[intent]}
    booking = world.store.booking_now(booking_id)
    assert booking is not None and booking.status is BookingStatus.REFUNDED
    assert world.store.seat(seats[0]).holder == "bea"  # sold once, to bea
    assert world.money_without_ticket() == []
    # A retry gets the refunded booking, and neither a new charge nor a second refund.
    again = await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD, request_id="p"))
    assert again.status is BookingStatus.REFUNDED and again.payment is not None
    assert again.payment.status is PaymentStatus.REFUNDED
    assert len(world.payments.charges) == 1 and len(world.payments.refunds) == 1


async def test_a_crash_after_the_charge_is_finished_by_the_retry_without_charging_again(
    world, monkeypatch
):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))

    await confirm_dies_in("record_payment", world, monkeypatch, ConfirmBooking((seats[0],), CARD))
    assert len(world.payments.charges) == 1 and world.store.seat(seats[0]).status == "held"
    booking = await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD))
    assert booking.status is BookingStatus.CONFIRMED
    assert len(world.payments.charges) == 1  # the same idempotency key: no second charge
    assert world.money_without_ticket() == []


async def test_confirm_needs_a_payment_method_and_the_callers_own_live_hold(world):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))
    with pytest.raises(InvalidArgument) as err:
        await world.service.confirm("ana", ConfirmBooking((seats[0],), "  "))
    assert err.value.metadata == {"field": "payment_details.payment_method_id"}
    with pytest.raises(PermissionDenied) as err:
        await world.service.confirm("bea", ConfirmBooking((seats[0],), CARD))
    assert err.value.reason == "NOT_HOLDER"
    world.clock.now += HOLD
    with pytest.raises(FailedPrecondition) as err:
        await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD))
    assert err.value.reason == "HOLD_EXPIRED"
    assert world.payments.charges == {} and world.store.state.bookings == {}


# --- webhooks and reads ----------------------------------------------------------------------


async def test_a_webhook_settles_a_payment_whose_buyer_went_away(world, monkeypatch):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))

    await confirm_dies_in("sell", world, monkeypatch, ConfirmBooking((seats[0],), CARD))
    assert world.money_without_ticket() != []  # paid, not yet sold: the webhook must finish it
    ((intent, _, booking_id),) = world.payments.charges.values()
    with pytest.raises(InvalidArgument) as err:
        await world.service.webhook(b"{}", "t=1,v1=forged")
    assert err.value.reason == "WEBHOOK_SIGNATURE_INVALID"
    payload = json.dumps({"type": "succeeded", "id": intent, "booking_id": booking_id})
    await world.service.webhook(payload.encode(), "t=1,v1=valid")
    assert world.store.seat(seats[0]).status == "booked"
    assert world.money_without_ticket() == []


async def test_bookings_are_listed_newest_first_a_page_at_a_time(world):
    _, seats = world.store.add_event(rows=(3,))
    made = []
    for seat in seats:
        await world.service.reserve("ana", ReserveTickets((seat,)))
        made.append((await world.service.confirm("ana", ConfirmBooking((seat,), CARD))).id)
    first = await world.service.list("ana", None, 2)
    assert [b.id for b in first.bookings] == made[::-1][:2] and first.more
    last = first.bookings[-1]
    rest = await world.service.list("ana", (last.create_time.isoformat(), last.id), 2)
    assert [b.id for b in rest.bookings] == [made[0]] and not rest.more
    assert (await world.service.list("bea", None, 2)).bookings == []


async def test_a_confirm_retried_after_a_recorded_charge_sells_without_asking_again(
    world, monkeypatch
):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))

    await confirm_dies_in(
        "sell", world, monkeypatch, ConfirmBooking((seats[0],), CARD, request_id="q")
    )
    booking = await world.service.confirm("ana", ConfirmBooking((seats[0],), CARD, request_id="q"))
    assert booking.status is BookingStatus.CONFIRMED
    # The payment was recorded as taken: the provider is not asked again (the local fake
    # Stripe would charge twice, it ignores idempotency keys).
    assert world.payments.calls == 1
    assert world.money_without_ticket() == []


async def test_a_webhook_finds_a_payment_whose_answer_was_lost_by_its_booking(world, monkeypatch):
    _, seats = world.store.add_event()
    await world.service.reserve("ana", ReserveTickets((seats[0],)))

    await confirm_dies_in("record_payment", world, monkeypatch, ConfirmBooking((seats[0],), CARD))
    ((intent, _, booking_id),) = world.payments.charges.values()
    payload = json.dumps({"type": "succeeded", "id": intent, "booking_id": booking_id})
    await world.service.webhook(payload.encode(), "t=1,v1=valid")
    assert world.store.seat(seats[0]).status == "booked"
    booking = world.store.booking_now(booking_id)
    assert booking is not None and booking.payment is not None
    assert booking.payment.provider_payment_id == intent
    assert world.money_without_ticket() == []


# --- per-event metrics -------------------------------------------------------------------------


def counted(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_holds_and_sales_are_counted_per_event_up_to_the_cap_then_as_other(
    world, monkeypatch
):
    """An operator's page per event: each sale's holds, refusals and bookings under its own
    event id, up to the cap; the event past the cap is counted as ``other`` (bounded series)."""
    from booking_svc import metrics
    from ticketing_common.metrics import BoundedLabel

    cap = 3
    monkeypatch.setattr(metrics, "_EVENT", BoundedLabel(cap=cap))
    events = [world.store.add_event(cap=2) for _ in range(cap + 1)]
    before = {e: counted("ticketing_holds_total", event_id=e, outcome="TAKEN") for e, _ in events}
    other = counted("ticketing_holds_total", event_id="other", outcome="TAKEN")
    other_refused = counted("ticketing_holds_total", event_id="other", outcome="LIMIT_EXCEEDED")
    sold = counted("ticketing_bookings_confirmed_total", event_id=events[0][0])
    for _event_id, seats in events:
        await world.service.reserve("ana", ReserveTickets((seats[0],)))
    await world.service.confirm("ana", ConfirmBooking((events[0][1][0],), CARD))
    with pytest.raises(ResourceExhausted):  # over the per-user cap, on the event past the cap
        await world.service.reserve("ana", ReserveTickets(tuple(events[cap][1][1:])))

    for event_id, _ in events[:cap]:
        assert counted("ticketing_holds_total", event_id=event_id, outcome="TAKEN") == (
            before[event_id] + 1
        )
    overflow = events[cap][0]
    assert counted("ticketing_holds_total", event_id=overflow, outcome="TAKEN") == 0
    assert counted("ticketing_holds_total", event_id="other", outcome="TAKEN") == other + 1
    assert (
        counted("ticketing_holds_total", event_id="other", outcome="LIMIT_EXCEEDED")
        == other_refused + 1
    )
    assert counted("ticketing_bookings_confirmed_total", event_id=events[0][0]) == sold + 1
    assert counted("ticketing_bookings_confirmed_total", event_id=events[1][0]) == 0


async def test_a_refusal_before_the_event_is_known_is_counted_as_unknown(world):
    _, seats = world.store.add_event()
    world.locks.owners[seats[0]] = "bea"
    before = counted("ticketing_holds_total", event_id="unknown", outcome="TICKET_UNAVAILABLE")
    with pytest.raises(FailedPrecondition):
        await world.service.reserve("ana", ReserveTickets((seats[0],)))
    assert (
        counted("ticketing_holds_total", event_id="unknown", outcome="TICKET_UNAVAILABLE")
        == before + 1
    )
