"""What booking's use cases need from the outside, as ports: the adapters implement them
(``adapters/postgres.py``: the store and its transactions; ``adapters/holds.py``: the Redis seat
locks; ``adapters/payments.py``: Stripe; ``adapters/page_cache.py``: the event-page change marks)
and the unit tests fake them in memory (``tests/unit/test_booking_service.py``).

Postgres decides every sale: the store's hold statements and ``sell`` are the guard; the seat
locks are a filter in front of it and may be down or wrong without harm.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from booking_svc.domain import (
    BestDecision,
    BestSeatsOrder,
    Booking,
    ConfirmStart,
    HoldDecision,
    PaymentEvent,
    PaymentRecord,
    PaymentResult,
    PaymentStatus,
    Reservation,
    ReserveBestAvailable,
    ReserveTickets,
    Sale,
)
from booking_svc.seat_picture import SeatPicture


class HoldSource(Protocol):
    """Where seats are held: each call is one statement (the user's lock, the sale's checks and
    the conditional update together), decided by Postgres."""

    async def hold_tickets(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision: ...

    async def hold_picked(
        self,
        user_id: str,
        ticket_ids: Sequence[str],
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> HoldDecision:
        """``hold_tickets`` for a block a seat picture proposed: decided the same way, except
        that a block holding one of the user's own seats is refused (TICKET_UNAVAILABLE, the
        other seats obtainable), never handed to them again as new ones."""
        ...

    async def hold_best_available(
        self,
        user_id: str,
        order: BestSeatsOrder,
        duration: dt.timedelta,
        admitted_event: str | None,
    ) -> BestDecision: ...


class SeatPictures(Protocol):
    """Where a booking process reads an event's seats for its picture (Postgres)."""

    async def seat_picture(self, event_id: str) -> SeatPicture | None:
        """The event's seats as they are now; None if there is no such event."""
        ...

    async def free_seat_ids(self, event_id: str, place: tuple[str, str] | None) -> list[str]:
        """The available tickets of one (section, row) of the event, or of all of it."""
        ...


class BookingTransaction(HoldSource, Protocol):
    """Statements inside one transaction: they commit together or not at all."""

    async def once(
        self,
        *,
        user_id: str,
        method: str,
        request: ReserveTickets | ReserveBestAvailable,
        action: Callable[[], Awaitable[Reservation]],
    ) -> Reservation:
        """AIP-155: run ``action`` in this transaction once per (user, method,
        request.request_id) and keep its answer; a retry of the same request gets that answer
        without running it again, another request under the same id InvalidArgument
        (REQUEST_ID_REUSED)."""
        ...

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> list[tuple[str, str]]:
        """Give back the user's holds: (ticket id, event id) of each seat released."""
        ...

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None: ...

    async def mark_refunded(self, booking_id: str, payment_id: str, refund_id: str) -> list[str]:
        """The booking is refunded and any seat it still holds goes back; those seats' ids."""
        ...

    async def payment_by_provider_id(self, provider_payment_id: str) -> PaymentRecord | None: ...

    async def payment_by_booking(self, booking_id: str) -> PaymentRecord | None:
        """The booking's latest payment."""
        ...

    async def booking(self, booking_id: str) -> Booking | None: ...


class BookingStore(HoldSource, SeatPictures, Protocol):
    """Postgres, the source of truth: holds on their own (one round trip each), reads, and
    transactions for everything else."""

    def transaction(
        self, *, pipelined: bool = False
    ) -> AbstractAsyncContextManager[BookingTransaction]:
        """A transaction; ``pipelined`` sends its statements without waiting for each answer
        (the hot path of a reserve with a request_id)."""
        ...

    async def booking(self, booking_id: str) -> Booking | None: ...

    async def bookings_of(
        self, user_id: str, before: tuple[str, str] | None, limit: int
    ) -> list[Booking]:
        """The user's bookings newest first, older than ``before`` (create time, id) if set."""
        ...

    # A confirm's three phases, each one statement in its own transaction (one round trip),
    # committed in this order: the intent before the charge, the charge's outcome before the
    # sale.

    async def begin_confirm(
        self, user_id: str, ticket_ids: Sequence[str], request_id: str, payment_method_id: str
    ) -> ConfirmStart:
        """Check and lock the tickets and record the pending booking and its payment attempt
        (idempotency key ``payment_idempotency_key(booking, method)``), or say why not: the
        booking a finished request_id names (replayed), or the tickets as they are when they
        are not this user's live holds (nothing written)."""
        ...

    async def record_payment(
        self,
        payment_id: str,
        provider_payment_id: str | None,
        status: PaymentStatus,
        failure_reason: str = "",
    ) -> None:
        """The provider's answer to a payment attempt, committed."""
        ...

    async def sell(self, booking_id: str) -> Sale:
        """Turn the booking's held tickets into sold ones, all or none, if they are still its
        holds; the booking as it is afterwards."""
        ...


class SeatLocks(Protocol):
    """The seed design's per-seat lock (Redis): a fast first filter, never the guard. Every
    method does nothing (or answers "free") when the locks cannot be reached."""

    async def take(
        self, user_id: str, ticket_ids: Sequence[str], *, held: bool = False
    ) -> str | None:
        """None if the user now holds every lock; else a seat someone else holds. Short-lived
        unless the seats are ``held`` in Postgres already."""
        ...

    async def extend(self, user_id: str, ticket_ids: Sequence[str]) -> None:
        """The seats are held in Postgres: the user's locks last as long as the hold."""
        ...

    async def release(self, user_id: str, ticket_ids: Sequence[str]) -> None: ...


class WebhookSignatureInvalid(Exception):
    """A provider notification whose signature does not match its payload."""


class Payments(Protocol):
    """The payment provider (Stripe)."""

    async def charge(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method_id: str,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> PaymentResult:
        """Charge the card; a retry with the same idempotency key never charges twice. Raises
        Unavailable when the provider cannot be reached."""
        ...

    async def refund(self, provider_payment_id: str, idempotency_key: str) -> str:
        """Refund a payment in full; the refund's id."""
        ...

    def verify_webhook(self, payload: bytes, signature: str) -> PaymentEvent | None:
        """The notification, if it is about a payment's outcome (None for other kinds); raises
        WebhookSignatureInvalid."""
        ...


class EventPages(Protocol):
    """The catalog's cached event pages (ticketing_common.event_pages)."""

    async def mark_changed(self, *event_ids: str) -> None:
        """Pages cached before now are not served again; best effort."""
        ...
