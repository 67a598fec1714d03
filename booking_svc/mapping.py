"""Translation between booking protos and domain values, nothing else (pure functions)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from google.protobuf import timestamp_pb2
from ticketing.booking.v1 import booking_pb2
from ticketing.common.v1 import common_pb2

from booking_svc.domain import (
    Booking,
    BookingsPage,
    BookingStatus,
    CancelReservation,
    ConfirmBooking,
    Money,
    PaymentStatus,
    Reservation,
    ReservationState,
    ReserveBestAvailable,
    ReserveTickets,
)

BOOKING_STATUS_TO_PROTO = {
    BookingStatus.PENDING: booking_pb2.BOOKING_STATUS_PENDING,
    BookingStatus.CONFIRMED: booking_pb2.BOOKING_STATUS_CONFIRMED,
    BookingStatus.CANCELLED: booking_pb2.BOOKING_STATUS_CANCELLED,
    BookingStatus.REFUNDED: booking_pb2.BOOKING_STATUS_REFUNDED,
}
PAYMENT_STATUS_TO_PROTO = {
    PaymentStatus.REQUIRES_ACTION: booking_pb2.PAYMENT_STATUS_REQUIRES_ACTION,
    PaymentStatus.SUCCEEDED: booking_pb2.PAYMENT_STATUS_SUCCEEDED,
    PaymentStatus.FAILED: booking_pb2.PAYMENT_STATUS_FAILED,
    PaymentStatus.REFUNDED: booking_pb2.PAYMENT_STATUS_REFUNDED,
}
RESERVATION_STATE_TO_PROTO = {
    ReservationState.HELD: booking_pb2.RESERVATION_STATE_HELD,
    ReservationState.CANCELLED: booking_pb2.RESERVATION_STATE_CANCELLED,
}


def _requested(first: str, more: Iterable[str]) -> tuple[str, ...]:
    """The tickets a request names (``ticket_id`` then ``ticket_ids``), as sent."""
    return (first, *more) if first else tuple(more)


def _timestamp(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def _money(value: Money) -> common_pb2.Money:
    return common_pb2.Money(currency_code=value.currency, amount_minor=value.amount_minor)


# --- requests -> commands ------------------------------------------------------------------


def reserve_tickets(request: booking_pb2.ReserveTicketRequest) -> ReserveTickets:
    return ReserveTickets(
        ticket_ids=_requested(request.ticket_id, request.ticket_ids),
        admission_token=request.admission_token,
        request_id=request.request_id,
    )


def reserve_best_available(
    request: booking_pb2.ReserveBestAvailableRequest,
) -> ReserveBestAvailable:
    return ReserveBestAvailable(
        event_id=request.event_id,
        quantity=request.quantity,
        price_tier=request.price_tier,
        section=request.section,
        admission_token=request.admission_token,
        request_id=request.request_id,
        seated_only=request.seated_only,
    )


def confirm_booking(request: booking_pb2.ConfirmBookingRequest) -> ConfirmBooking:
    return ConfirmBooking(
        ticket_ids=_requested(request.ticket_id, request.ticket_ids),
        payment_method_id=request.payment_details.payment_method_id,
        request_id=request.request_id,
    )


def cancel_reservation(request: booking_pb2.CancelReservationRequest) -> CancelReservation:
    return CancelReservation(ticket_ids=_requested(request.ticket_id, request.ticket_ids))


# --- domain values -> responses ------------------------------------------------------------


def reservation_to_proto(reservation: Reservation) -> booking_pb2.Reservation:
    return booking_pb2.Reservation(
        ticket_ids=reservation.ticket_ids,
        event_id=reservation.event_id,
        user_id=reservation.user_id,
        expire_time=_timestamp(reservation.expire_time),
        total=_money(reservation.total) if reservation.total is not None else None,
        state=RESERVATION_STATE_TO_PROTO[reservation.state],
    )


def booking_to_proto(booking: Booking) -> booking_pb2.Booking:
    total = _money(booking.total)
    proto = booking_pb2.Booking(
        id=booking.id,
        user_id=booking.user_id,
        event_id=booking.event_id,
        ticket_ids=booking.ticket_ids,
        status=BOOKING_STATUS_TO_PROTO[booking.status],
        total=total,
        create_time=_timestamp(booking.create_time),
        confirm_time=_timestamp(booking.confirm_time),
    )
    if booking.payment is not None:
        payment = booking.payment
        proto.payment.CopyFrom(
            booking_pb2.Payment(
                provider_payment_id=payment.provider_payment_id or "",
                status=PAYMENT_STATUS_TO_PROTO[payment.status],
                amount=total,
                refund_id=payment.refund_id or "",
                failure_reason=payment.failure_reason or "",
            )
        )
    return proto


def bookings_page_to_proto(
    page: BookingsPage, next_page_token: str
) -> booking_pb2.ListBookingsResponse:
    return booking_pb2.ListBookingsResponse(
        bookings=[booking_to_proto(b) for b in page.bookings], next_page_token=next_page_token
    )
