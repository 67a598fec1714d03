"""Booking use cases: reserve, confirm with payment, cancel, reconcile from webhooks.

Order of effects in a confirm, chosen so that a crash anywhere loses neither a seat nor money
(each step one statement, one round trip: migration 0017's functions):
1. one transaction checks the holds and records a pending booking and its payment attempt;
2. the card is charged (outside any transaction), and the outcome recorded;
3. one transaction turns the held seats into sold ones if they are still this booking's holds;
   otherwise the payment is refunded and the buyer told so.
A Stripe webhook for a payment whose client went away runs step 3 for it.

The use cases take and return domain values (``booking_svc.domain``; ``mapping.py`` turns them
into protos) and reach Postgres, Redis and Stripe only through the ports of
``booking_svc/ports.py`` (unit-tested with fakes in ``tests/unit/test_booking_service.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from booking_svc import metrics
from booking_svc.best_available import PictureBook, hold_best
from booking_svc.domain import (
    HOLD_DURATION,
    BestDecision,
    BestSeatsOrder,
    Booking,
    BookingsPage,
    BookingStatus,
    CancelReservation,
    ConfirmBooking,
    ConfirmOutcome,
    HoldDecision,
    HoldOutcome,
    PaymentEventKind,
    PaymentOutcome,
    PaymentResult,
    PaymentStatus,
    Reservation,
    ReservationState,
    ReserveBestAvailable,
    ReserveTickets,
    best_seats_order,
    best_seats_refused,
    canonical_ticket_ids,
    confirm_refused,
    declined,
    held_reservation,
    hold_refused,
    payment_idempotency_key,
    refunded_after_lost_hold,
    unavailable,
)
from booking_svc.ports import (
    BookingStore,
    EventPages,
    HoldSource,
    Payments,
    SeatLocks,
    WebhookSignatureInvalid,
)
from ticketing_common import admission
from ticketing_common.errors import DomainError, InvalidArgument, NotFound, Reason
from ticketing_common.metrics import outcome_of

log = logging.getLogger("booking")

# The AIP-155 replay store's method names (the gRPC methods these use cases serve).
_SERVICE = "/ticketing.booking.v1.BookingService/"


class _Seen:
    """The event a call turned out to be for, once known: its metrics' ``event_id``."""

    __slots__ = ("event_id",)

    def __init__(self, event_id: str | None = None) -> None:
        self.event_id = event_id


class BookingService:
    def __init__(
        self,
        store: BookingStore,
        locks: SeatLocks,
        payments: Payments,
        pages: EventPages,
        *,
        admission_key: str,
        hold_duration: dt.timedelta = HOLD_DURATION,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        pictures: PictureBook | None = None,
    ) -> None:
        """``pictures``: best-available blocks proposed from the process's seat pictures and
        held through the single-seat path (``best_available.py``); None: every best-available
        order is ``hold_best_available``'s alone."""
        self._pictures = pictures
        self._hold_duration = hold_duration
        self._store = store
        self._locks = locks
        self._payments = payments
        self._pages = pages
        self._admission_key = admission_key
        self._clock = clock

    async def _changed(self, *event_ids: str | None) -> None:
        ids = sorted({e for e in event_ids if e})
        if ids:
            await self._pages.mark_changed(*ids)

    # --- reserve -----------------------------------------------------------------------------

    async def reserve(self, user_id: str, command: ReserveTickets) -> Reservation:
        seen = _Seen()
        try:
            reservation = await self._reserve(user_id, command, seen)
        except Exception as exc:
            metrics.HOLDS.labels(metrics.event_label(seen.event_id), outcome_of(exc)).inc()
            raise
        event = metrics.event_label(reservation.event_id)
        metrics.HOLDS.labels(event, "TAKEN").inc()
        metrics.TICKETS_HELD.labels(event).inc(len(reservation.ticket_ids))
        return reservation

    async def _reserve(self, user_id: str, command: ReserveTickets, seen: _Seen) -> Reservation:
        ids = canonical_ticket_ids(command.ticket_ids)
        blocked = await self._locks.take(user_id, ids)
        if blocked is not None:
            raise unavailable([blocked])
        # The token's signature, expiry and user are checked here; its event against the
        # order's in the database, in the statement that holds the seats.
        admitted = admission.admitted_event(
            self._admission_key, command.admission_token, user_id=user_id
        )

        async def hold(source: HoldSource) -> Reservation:
            decision = await source.hold_tickets(user_id, ids, self._hold_duration, admitted)
            if decision.window is not None:
                seen.event_id = decision.window.event_id
            return self._held(user_id, command.admission_token, ids, decision)

        try:
            reservation = await self._hold_once(user_id, "ReserveTicket", command, hold)
        except BaseException:
            await self._locks.release(user_id, ids)
            raise
        await self._locks.extend(user_id, ids)
        await self._changed(reservation.event_id)
        return reservation

    async def _hold_once(
        self,
        user_id: str,
        method: str,
        command: ReserveTickets | ReserveBestAvailable,
        hold: Callable[[HoldSource], Awaitable[Reservation]],
    ) -> Reservation:
        """``hold(source)`` against the store (one statement, one round trip) or, when the
        command carries a request_id, against one transaction that also claims the id and
        stores the answer, so a retry replays the first answer."""
        if not command.request_id:
            return await hold(self._store)
        async with self._store.transaction(pipelined=True) as tx:
            return await tx.once(
                user_id=user_id,
                method=_SERVICE + method,
                request=command,
                action=lambda: hold(tx),
            )

    def _explain_not_admitted(self, user_id: str, token: str, decision: HoldDecision) -> None:
        if decision.outcome is HoldOutcome.NOT_ADMITTED and decision.window is not None:
            admission.verify(  # says what is wrong with the token
                self._admission_key, token, user_id=user_id, event_id=decision.window.event_id
            )

    def _held(
        self, user_id: str, token: str, ids: list[str], decision: HoldDecision
    ) -> Reservation:
        """The reservation Postgres granted, or the error that explains its refusal."""
        self._explain_not_admitted(user_id, token, decision)
        if decision.outcome is not HoldOutcome.HELD:
            raise hold_refused(
                decision.outcome, decision.window, decision.already_mine, ids, decision.obtainable
            )
        if len(decision.holds) < len(ids):
            raise unavailable(sorted(set(ids) - {h.ticket_id for h in decision.holds}))
        assert decision.window is not None
        return held_reservation(user_id, decision.window.event_id, decision.holds)

    # --- reserve the best available seats ---------------------------------------------------

    async def reserve_best(self, user_id: str, command: ReserveBestAvailable) -> Reservation:
        # Labelled by the event Postgres found, never by the request's word alone (made-up
        # ids would fill the label's cap).
        seen = _Seen()
        try:
            reservation = await self._reserve_best(user_id, command, seen)
        except Exception as exc:
            event = metrics.event_label(seen.event_id)
            metrics.HOLDS.labels(event, outcome_of(exc)).inc()
            metrics.BEST_AVAILABLE.labels(event, outcome_of(exc)).inc()
            raise
        event = metrics.event_label(reservation.event_id)
        metrics.HOLDS.labels(event, "TAKEN").inc()
        metrics.BEST_AVAILABLE.labels(event, "TAKEN").inc()
        metrics.TICKETS_HELD.labels(event).inc(len(reservation.ticket_ids))
        return reservation

    async def _reserve_best(
        self, user_id: str, command: ReserveBestAvailable, seen: _Seen
    ) -> Reservation:
        order = best_seats_order(
            command.event_id,
            command.quantity,
            command.price_tier,
            command.section,
            command.seated_only,
        )
        admitted = admission.admitted_event(
            self._admission_key, command.admission_token, user_id=user_id
        )

        async def hold(source: HoldSource) -> Reservation:
            if self._pictures is not None:
                best = await hold_best(
                    source, self._pictures, user_id, order, self._hold_duration, admitted
                )
            else:
                best = await source.hold_best_available(
                    user_id, order, self._hold_duration, admitted
                )
            if best.decision.window is not None:
                seen.event_id = best.decision.window.event_id
            return self._best_held(user_id, command.admission_token, order, best)

        reservation = await self._hold_once(user_id, "ReserveBestAvailable", command, hold)
        # The seats are held in Postgres; the Redis locks only keep single-seat orders for
        # them away from the database (refused or not, Postgres has decided).
        await self._locks.take(user_id, list(reservation.ticket_ids), held=True)
        await self._changed(reservation.event_id)
        return reservation

    def _best_held(
        self, user_id: str, token: str, order: BestSeatsOrder, best: BestDecision
    ) -> Reservation:
        decision = best.decision
        self._explain_not_admitted(user_id, token, decision)
        if decision.outcome is not HoldOutcome.HELD:
            raise best_seats_refused(
                decision.outcome,
                order,
                decision.window,
                decision.already_mine,
                best.seats_remaining,
            )
        assert decision.window is not None and len(decision.holds) == order.quantity
        return held_reservation(user_id, decision.window.event_id, decision.holds)

    # --- cancel ------------------------------------------------------------------------------

    async def cancel(self, user_id: str, command: CancelReservation) -> Reservation:
        ids = canonical_ticket_ids(command.ticket_ids)
        async with self._store.transaction() as tx:
            released = await tx.release(user_id, ids)
        if not released:
            raise NotFound("you hold none of these tickets", reason=Reason.NOT_HOLDER)
        await self._locks.release(user_id, [t for t, _ in released])
        if self._pictures is not None:
            for event_id in {e for _, e in released}:
                self._pictures.released(event_id, [t for t, e in released if e == event_id])
        await self._changed(*(e for _, e in released))
        return Reservation(
            ticket_ids=tuple(t for t, _ in released),
            event_id=released[0][1],
            user_id=user_id,
            state=ReservationState.CANCELLED,
        )

    # --- confirm -----------------------------------------------------------------------------

    async def confirm(self, user_id: str, command: ConfirmBooking) -> Booking:
        seen = _Seen()
        try:
            booking = await self._confirm(user_id, command, seen)
        except Exception as exc:
            metrics.CONFIRMS.labels(metrics.event_label(seen.event_id), outcome_of(exc)).inc()
            raise
        metrics.CONFIRMS.labels(metrics.event_label(booking.event_id), "CONFIRMED").inc()
        return booking

    async def _confirm(self, user_id: str, command: ConfirmBooking, seen: _Seen) -> Booking:
        ids = canonical_ticket_ids(command.ticket_ids)
        method = command.payment_method_id.strip()
        if not method:
            raise InvalidArgument(
                "paymentDetails.paymentMethodId is required (a Stripe PaymentMethod id)",
                metadata={"field": "payment_details.payment_method_id"},
            )
        # Phase 1 (one round trip): the holds checked, the booking and the payment attempt
        # recorded before any money moves.
        start = await self._store.begin_confirm(user_id, ids, command.request_id, method)
        seen.event_id = start.event_id
        if start.outcome is ConfirmOutcome.FINISHED:
            assert start.booking is not None
            return start.booking  # a retry of a finished confirm
        if start.outcome is ConfirmOutcome.REFUSED:
            raise confirm_refused(user_id, start.tickets, len(ids), self._clock())
        payment, total = start.payment, start.total
        assert payment is not None and total is not None
        key = payment_idempotency_key(payment.booking_id, method)
        assert start.idempotency_key == key, (start.idempotency_key, key)
        replayed = payment.status is PaymentStatus.SUCCEEDED
        if replayed:
            result = PaymentResult(PaymentOutcome.SUCCEEDED, payment.provider_payment_id)
        else:
            # Phase 2: the charge, then its outcome (one round trip) before the sale is tried.
            result = await self._payments.charge(
                amount_minor=total.amount_minor,
                currency=total.currency,
                payment_method_id=method,
                idempotency_key=key,
                metadata={"booking_id": payment.booking_id, "user_id": user_id},
            )
            await self._store.record_payment(
                payment.id,
                result.provider_payment_id,
                PaymentStatus.SUCCEEDED
                if result.outcome is PaymentOutcome.SUCCEEDED
                else PaymentStatus.FAILED,
                result.failure_reason,
            )
        if result.outcome is PaymentOutcome.DECLINED:
            metrics.PAYMENTS.labels("declined").inc()
            raise declined(result)
        if not replayed:  # a payment of this call, not a replay of an earlier one
            metrics.PAYMENTS.labels("succeeded").inc()
        assert result.provider_payment_id is not None
        return await self._settle(payment.booking_id, payment.id, result.provider_payment_id)

    async def _settle(self, booking_id: str, payment_id: str, provider_payment_id: str) -> Booking:
        """Money is taken: book the seats if they are still this booking's, else refund.
        Phase 3 of a confirm (one round trip when the seats are sold)."""
        sale = await self._store.sell(booking_id)
        booking = sale.booking
        assert booking is not None
        event_id = booking.event_id
        if sale.complete:
            metrics.BOOKINGS_CONFIRMED.labels(metrics.event_label(event_id)).inc()
            # Both best effort and independent: sent together, one wait instead of two.
            await asyncio.gather(
                self._locks.release(booking.user_id, booking.ticket_ids), self._changed(event_id)
            )
            return booking
        if booking.status is BookingStatus.REFUNDED:
            refund = booking.payment.refund_id if booking.payment is not None else None
            raise refunded_after_lost_hold(refund or "")
        refund_id = await self._payments.refund(provider_payment_id, f"refund-{booking_id}")
        async with self._store.transaction() as tx:
            await tx.mark_refunded(booking_id, payment_id, refund_id)
        metrics.PAYMENTS.labels("refunded").inc()
        log.warning("booking %s lost its hold while paying; refunded %s", booking_id, refund_id)
        await self._locks.release(booking.user_id, booking.ticket_ids)
        await self._changed(event_id)
        raise refunded_after_lost_hold(refund_id)

    # --- reads -------------------------------------------------------------------------------

    async def get(self, user_id: str, booking_id: str) -> Booking:
        booking = await self._store.booking(booking_id)
        if booking is None or booking.user_id != user_id:  # another user's booking is invisible
            raise NotFound(f"no booking {booking_id}", reason=Reason.BOOKING_NOT_FOUND)
        return booking

    async def list(self, user_id: str, before: tuple[str, str] | None, limit: int) -> BookingsPage:
        """Up to ``limit`` of the user's bookings, newest first, older than ``before``."""
        bookings = await self._store.bookings_of(user_id, before, limit + 1)
        return BookingsPage(bookings[:limit], more=len(bookings) > limit)

    # --- webhooks ----------------------------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str) -> None:
        try:
            event = self._payments.verify_webhook(payload, signature)
        except WebhookSignatureInvalid as exc:
            raise InvalidArgument(
                "the Stripe-Signature header does not match the payload",
                reason=Reason.WEBHOOK_SIGNATURE_INVALID,
            ) from exc
        if event is None:
            return
        succeeded = event.kind is PaymentEventKind.SUCCEEDED
        async with self._store.transaction() as tx:
            found = await tx.payment_by_provider_id(event.provider_payment_id)
            if found is None and event.booking_id:
                found = await tx.payment_by_booking(event.booking_id)
            if found is None:
                log.info("webhook for unknown payment %s ignored", event.provider_payment_id)
                return
            if found.status is not PaymentStatus.REFUNDED:
                await tx.record_payment(
                    found.id,
                    event.provider_payment_id,
                    PaymentStatus.SUCCEEDED if succeeded else PaymentStatus.FAILED,
                )
        if succeeded:
            try:
                await self._settle(found.booking_id, found.id, event.provider_payment_id)
            except DomainError as outcome:  # a refund is the right end for a lost hold
                log.info("webhook settled booking %s: %s", found.booking_id, outcome.reason)
