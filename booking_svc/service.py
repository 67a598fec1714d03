"""Booking use cases: reserve, confirm with payment, cancel, reconcile from webhooks.

Order of effects in a confirm, chosen so that a crash anywhere loses neither a seat nor money:
1. one transaction checks the holds and records a pending booking and its payment attempt;
2. the card is charged (outside any transaction), and the outcome recorded;
3. one transaction turns the held seats into sold ones if they are still this booking's holds;
   otherwise the payment is refunded and the buyer told so.
A Stripe webhook for a payment whose client went away runs step 3 for it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as redis
import stripe
from google.protobuf import timestamp_pb2
from ticketing.booking.v1 import booking_pb2
from ticketing.common.v1 import common_pb2

from booking_svc import metrics
from booking_svc.adapters.holds import HoldLocks
from booking_svc.adapters.payments import StripePayments
from booking_svc.adapters.postgres import (
    BestDecision,
    BookingRecord,
    BookingRepository,
    Hold,
    HoldDecision,
)
from booking_svc.domain import (
    HOLD_DURATION,
    BestSeatsOrder,
    HoldOutcome,
    PaymentOutcome,
    PaymentResult,
    best_seats_order,
    best_seats_refused,
    declined,
    ensure_payable,
    hold_refused,
    payment_idempotency_key,
    refunded_after_lost_hold,
    ticket_ids,
    unavailable,
)
from ticketing_common import admission, event_pages
from ticketing_common.errors import DomainError, InvalidArgument, NotFound, Reason
from ticketing_common.idempotency import run_once
from ticketing_common.metrics import outcome_of

log = logging.getLogger("booking")

_SERVICE = "/ticketing.booking.v1.BookingService/"
_BOOKING_STATUS = {
    "pending": booking_pb2.BOOKING_STATUS_PENDING,
    "confirmed": booking_pb2.BOOKING_STATUS_CONFIRMED,
    "cancelled": booking_pb2.BOOKING_STATUS_CANCELLED,
    "refunded": booking_pb2.BOOKING_STATUS_REFUNDED,
}
_PAYMENT_STATUS = {
    "requires_action": booking_pb2.PAYMENT_STATUS_REQUIRES_ACTION,
    "succeeded": booking_pb2.PAYMENT_STATUS_SUCCEEDED,
    "failed": booking_pb2.PAYMENT_STATUS_FAILED,
    "refunded": booking_pb2.PAYMENT_STATUS_REFUNDED,
}


def _ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def booking_to_proto(record: BookingRecord) -> booking_pb2.Booking:
    total = common_pb2.Money(currency_code=record.currency, amount_minor=record.total_minor)
    proto = booking_pb2.Booking(
        id=record.id,
        user_id=record.user_id,
        event_id=record.event_id,
        ticket_ids=record.ticket_ids,
        status=_BOOKING_STATUS[record.status],
        total=total,
        create_time=_ts(record.create_time),
        confirm_time=_ts(record.confirm_time),
    )
    if record.payment_id:
        proto.payment.CopyFrom(
            booking_pb2.Payment(
                provider_payment_id=record.provider_payment_id or "",
                status=_PAYMENT_STATUS.get(record.payment_status or "", 0),
                amount=total,
                refund_id=record.refund_id or "",
                failure_reason=record.failure_reason or "",
            )
        )
    return proto


def _reservation(user_id: str, event_id: str, holds: Sequence[Hold]) -> booking_pb2.Reservation:
    return booking_pb2.Reservation(
        ticket_ids=[h.ticket_id for h in holds],
        event_id=event_id,
        user_id=user_id,
        expire_time=_ts(min(h.hold_expire_time for h in holds)),
        total=common_pb2.Money(
            currency_code=holds[0].currency, amount_minor=sum(h.price_minor for h in holds)
        ),
        state=booking_pb2.RESERVATION_STATE_HELD,
    )


class BookingService:
    def __init__(
        self,
        repository: BookingRepository,
        locks: HoldLocks,
        payments: StripePayments,
        pages: redis.Redis | None,
        *,
        admission_key: str,
        webhook_secret: str,
        hold_duration: dt.timedelta = HOLD_DURATION,
    ) -> None:
        self._hold_duration = hold_duration
        self._repository = repository
        self._locks = locks
        self._payments = payments
        self._pages = pages
        self._admission_key = admission_key
        self._webhook_secret = webhook_secret

    async def _changed(self, *event_ids: str | None) -> None:
        ids = sorted({e for e in event_ids if e})
        if self._pages is not None and ids:
            await event_pages.mark_changed(self._pages, *ids)

    # --- reserve -----------------------------------------------------------------------------

    async def reserve(
        self, user_id: str, request: booking_pb2.ReserveTicketRequest
    ) -> booking_pb2.Reservation:
        try:
            reservation = await self._reserve(user_id, request)
        except Exception as exc:
            metrics.HOLDS.labels(outcome_of(exc)).inc()
            raise
        metrics.HOLDS.labels("TAKEN").inc()
        metrics.TICKETS_HELD.inc(len(reservation.ticket_ids))
        return reservation

    async def _reserve(
        self, user_id: str, request: booking_pb2.ReserveTicketRequest
    ) -> booking_pb2.Reservation:
        ids = ticket_ids(request.ticket_id, request.ticket_ids)
        blocked = await self._locks.take(user_id, ids)
        if blocked is not None:
            raise unavailable([blocked])
        # The token's signature, expiry and user are checked here; its event against the
        # order's in the database, in the statement that holds the seats.
        admitted = admission.admitted_event(
            self._admission_key, request.admission_token, user_id=user_id
        )

        async def hold(source: Any) -> booking_pb2.Reservation:
            decision = await source.hold_tickets(user_id, ids, self._hold_duration, admitted)
            return self._held(user_id, request, ids, decision)

        try:
            reservation = await self._hold_once(user_id, "ReserveTicket", request, hold)
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
        request: Any,
        hold: Callable[[Any], Awaitable[booking_pb2.Reservation]],
    ) -> booking_pb2.Reservation:
        """``hold(source)`` against the repository (one statement, one round trip) or, when the
        request carries a request_id, against one transaction that also claims the id and
        stores the answer, so a retry replays the first answer."""
        if not request.request_id:
            return await hold(self._repository)
        async with self._repository.transaction(pipelined=True) as tx:

            async def action() -> bytes:
                return (await hold(tx)).SerializeToString()

            payload = await run_once(
                tx.conn,
                user_id=user_id,
                method=_SERVICE + method,
                request_id=request.request_id,
                request=request.SerializeToString(),
                action=action,
            )
        return booking_pb2.Reservation.FromString(payload)

    def _held(
        self,
        user_id: str,
        request: booking_pb2.ReserveTicketRequest,
        ids: Sequence[str],
        decision: HoldDecision,
    ) -> booking_pb2.Reservation:
        """The reservation Postgres granted, or the error that explains its refusal."""
        if decision.outcome is HoldOutcome.NOT_ADMITTED and decision.window is not None:
            admission.verify(  # says what is wrong with the token
                self._admission_key,
                request.admission_token,
                user_id=user_id,
                event_id=decision.window.event_id,
            )
        if decision.outcome is not HoldOutcome.HELD:
            raise hold_refused(
                decision.outcome, decision.window, decision.already_mine, ids, decision.obtainable
            )
        if len(decision.holds) < len(ids):
            raise unavailable(sorted(set(ids) - {h.ticket_id for h in decision.holds}))
        assert decision.window is not None
        return _reservation(user_id, decision.window.event_id, decision.holds)

    # --- reserve the best available seats ---------------------------------------------------

    async def reserve_best(
        self, user_id: str, request: booking_pb2.ReserveBestAvailableRequest
    ) -> booking_pb2.Reservation:
        try:
            reservation = await self._reserve_best(user_id, request)
        except Exception as exc:
            metrics.HOLDS.labels(outcome_of(exc)).inc()
            metrics.BEST_AVAILABLE.labels(outcome_of(exc)).inc()
            raise
        metrics.HOLDS.labels("TAKEN").inc()
        metrics.BEST_AVAILABLE.labels("TAKEN").inc()
        metrics.TICKETS_HELD.inc(len(reservation.ticket_ids))
        return reservation

    async def _reserve_best(
        self, user_id: str, request: booking_pb2.ReserveBestAvailableRequest
    ) -> booking_pb2.Reservation:
        order = best_seats_order(
            request.event_id, request.quantity, request.price_tier, request.section
        )
        admitted = admission.admitted_event(
            self._admission_key, request.admission_token, user_id=user_id
        )

        async def hold(source: Any) -> booking_pb2.Reservation:
            best = await source.hold_best_available(user_id, order, self._hold_duration, admitted)
            return self._best_held(user_id, request, order, best)

        reservation = await self._hold_once(user_id, "ReserveBestAvailable", request, hold)
        # The seats are held in Postgres; the Redis locks only keep single-seat orders for
        # them away from the database (refused or not, Postgres has decided).
        await self._locks.take(user_id, list(reservation.ticket_ids), held=True)
        await self._changed(reservation.event_id)
        return reservation

    def _best_held(
        self,
        user_id: str,
        request: booking_pb2.ReserveBestAvailableRequest,
        order: BestSeatsOrder,
        best: BestDecision,
    ) -> booking_pb2.Reservation:
        decision = best.decision
        if decision.outcome is HoldOutcome.NOT_ADMITTED and decision.window is not None:
            admission.verify(
                self._admission_key,
                request.admission_token,
                user_id=user_id,
                event_id=decision.window.event_id,
            )
        if decision.outcome is not HoldOutcome.HELD:
            raise best_seats_refused(
                decision.outcome,
                order,
                decision.window,
                decision.already_mine,
                best.seats_remaining,
            )
        assert decision.window is not None and len(decision.holds) == order.quantity
        return _reservation(user_id, decision.window.event_id, decision.holds)

    # --- cancel ------------------------------------------------------------------------------

    async def cancel(
        self, user_id: str, request: booking_pb2.CancelReservationRequest
    ) -> booking_pb2.Reservation:
        ids = ticket_ids(request.ticket_id, request.ticket_ids)
        async with self._repository.transaction() as tx:
            released = await tx.release(user_id, ids)
        if not released:
            raise NotFound("you hold none of these tickets", reason=Reason.NOT_HOLDER)
        await self._locks.release(user_id, [t for t, _ in released])
        await self._changed(*(e for _, e in released))
        return booking_pb2.Reservation(
            ticket_ids=[t for t, _ in released],
            event_id=released[0][1],
            user_id=user_id,
            state=booking_pb2.RESERVATION_STATE_CANCELLED,
        )

    # --- confirm -----------------------------------------------------------------------------

    async def confirm(
        self, user_id: str, request: booking_pb2.ConfirmBookingRequest
    ) -> booking_pb2.Booking:
        try:
            booking = await self._confirm(user_id, request)
        except Exception as exc:
            metrics.CONFIRMS.labels(outcome_of(exc)).inc()
            raise
        metrics.CONFIRMS.labels("CONFIRMED").inc()
        return booking

    async def _confirm(
        self, user_id: str, request: booking_pb2.ConfirmBookingRequest
    ) -> booking_pb2.Booking:
        ids = ticket_ids(request.ticket_id, request.ticket_ids)
        method = request.payment_details.payment_method_id.strip()
        if not method:
            raise InvalidArgument(
                "paymentDetails.paymentMethodId is required (a Stripe PaymentMethod id)",
                metadata={"field": "payment_details.payment_method_id"},
            )
        async with self._repository.transaction() as tx:
            existing = (
                await tx.booking_for_request(user_id, request.request_id)
                if request.request_id
                else None
            )
            if existing is not None and existing.status != "pending":
                return booking_to_proto(existing)  # a retry of a finished confirm
            tickets = await tx.held_tickets(ids)
            paid_already = existing is not None and existing.payment_status == "succeeded"
            if not paid_already:
                ensure_payable(user_id, tickets, len(ids), dt.datetime.now(dt.UTC))
            booking_id = (
                existing.id
                if existing is not None
                else await tx.pending_booking_of(user_id, ids)
                or await tx.create_booking(
                    user_id, tickets[0].event_id, tickets, request.request_id
                )
            )
            total = sum(t.price_minor for t in tickets)
            payment_id, provider_id, status = await tx.start_payment(
                booking_id,
                payment_idempotency_key(booking_id, method),
                total,
                tickets[0].currency,
            )
        if status == "succeeded":
            result = PaymentResult(PaymentOutcome.SUCCEEDED, provider_id)
        else:
            result = await self._payments.charge(
                amount_minor=total,
                currency=tickets[0].currency,
                payment_method_id=method,
                idempotency_key=payment_idempotency_key(booking_id, method),
                metadata={"booking_id": booking_id, "user_id": user_id},
            )
            async with self._repository.transaction() as tx:
                await tx.record_payment(
                    payment_id,
                    result.provider_payment_id,
                    "succeeded" if result.outcome is PaymentOutcome.SUCCEEDED else "failed",
                    result.failure_reason,
                )
        if result.outcome is PaymentOutcome.DECLINED:
            metrics.PAYMENTS.labels("declined").inc()
            raise declined(result)
        if status != "succeeded":  # a payment of this call, not a replay of an earlier one
            metrics.PAYMENTS.labels("succeeded").inc()
        assert result.provider_payment_id is not None
        return await self._settle(booking_id, payment_id, result.provider_payment_id)

    async def _settle(
        self, booking_id: str, payment_id: str, provider_payment_id: str
    ) -> booking_pb2.Booking:
        """Money is taken: book the seats if they are still this booking's, else refund."""
        async with self._repository.transaction() as tx:
            sold, wanted, event_id = await tx.sell(booking_id)
            record = await tx.booking(booking_id)
        assert record is not None
        if wanted and sold == wanted:
            metrics.BOOKINGS_CONFIRMED.inc()
            await self._locks.release(record.user_id, record.ticket_ids)
            await self._changed(event_id)
            return booking_to_proto(record)
        if record.status == "refunded":
            raise refunded_after_lost_hold(record.refund_id or "")
        refund_id = await self._payments.refund(provider_payment_id, f"refund-{booking_id}")
        async with self._repository.transaction() as tx:
            await tx.mark_refunded(booking_id, payment_id, refund_id)
        metrics.PAYMENTS.labels("refunded").inc()
        log.warning("booking %s lost its hold while paying; refunded %s", booking_id, refund_id)
        await self._locks.release(record.user_id, record.ticket_ids)
        await self._changed(event_id)
        raise refunded_after_lost_hold(refund_id)

    # --- reads -------------------------------------------------------------------------------

    async def get(self, user_id: str, booking_id: str) -> booking_pb2.Booking:
        record = await self._repository.booking(booking_id)
        if record is None or record.user_id != user_id:  # another user's booking is invisible
            raise NotFound(f"no booking {booking_id}", reason=Reason.BOOKING_NOT_FOUND)
        return booking_to_proto(record)

    async def list(
        self, user_id: str, before: tuple[str, str] | None, limit: int
    ) -> list[BookingRecord]:
        return await self._repository.bookings_of(user_id, before, limit)

    # --- webhooks ----------------------------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str) -> None:
        try:
            event = self._payments.verify_webhook(payload, signature, self._webhook_secret)
        except (stripe.SignatureVerificationError, ValueError) as exc:
            raise InvalidArgument(
                "the Stripe-Signature header does not match the payload",
                reason=Reason.WEBHOOK_SIGNATURE_INVALID,
            ) from exc
        if event.type not in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            return
        intent = event.data.object.to_dict()
        booking_id = (intent.get("metadata") or {}).get("booking_id")
        async with self._repository.transaction() as tx:
            found = await tx.payment_by_provider_id(intent["id"])
            if found is None and booking_id:
                by_booking = await tx.payment_by_booking(booking_id)
                found = (by_booking[0], booking_id, by_booking[2]) if by_booking else None
            if found is None:
                log.info("webhook for unknown payment %s ignored", intent["id"])
                return
            payment_id, booking_id, status = found
            succeeded = event.type == "payment_intent.succeeded"
            if status != "refunded":
                await tx.record_payment(
                    payment_id, intent["id"], "succeeded" if succeeded else "failed"
                )
        if succeeded:
            try:
                await self._settle(booking_id, payment_id, intent["id"])
            except DomainError as outcome:  # a refund is the right end for a lost hold
                log.info("webhook settled booking %s: %s", booking_id, outcome.reason)
