"""gRPC edge of booking: proto -> domain command (``mapping``), the caller from the gateway's
identity headers, one use case, domain -> proto. Errors are raised as domain errors; the shared
interceptor turns them into statuses."""

from __future__ import annotations

from typing import Any

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc

from booking_svc import mapping
from booking_svc.service import BookingService
from ticketing_common.errors import InvalidArgument, Reason
from ticketing_common.identity import caller_from_metadata
from ticketing_common.pagination import (
    decode_page_token,
    encode_page_token,
    invalid_page_token,
    page_size,
    parse_id,
)
from ticketing_common.server import ServiceBinding

SERVICE_NAME = booking_pb2.DESCRIPTOR.services_by_name["BookingService"].full_name


def _user(context: grpc.aio.ServicerContext) -> str:
    return caller_from_metadata(context.invocation_metadata()).require_user()


def _cursor(key: list[Any] | None) -> tuple[str, str] | None:
    """(create time, id) of the last booking of the previous page."""
    if key is None:
        return None
    if len(key) != 2:
        raise invalid_page_token()
    return str(key[0]), str(key[1])


class BookingServiceServicer(booking_pb2_grpc.BookingServiceServicer):
    def __init__(self, service: BookingService) -> None:
        self._service = service

    async def ReserveTicket(
        self, request: booking_pb2.ReserveTicketRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        reservation = await self._service.reserve(_user(context), mapping.reserve_tickets(request))
        return mapping.reservation_to_proto(reservation)

    async def ReserveBestAvailable(
        self, request: booking_pb2.ReserveBestAvailableRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        command = mapping.reserve_best_available(request)
        return mapping.reservation_to_proto(
            await self._service.reserve_best(_user(context), command)
        )

    async def ConfirmBooking(
        self, request: booking_pb2.ConfirmBookingRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Booking:
        booking = await self._service.confirm(_user(context), mapping.confirm_booking(request))
        return mapping.booking_to_proto(booking)

    async def CancelReservation(
        self, request: booking_pb2.CancelReservationRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        command = mapping.cancel_reservation(request)
        return mapping.reservation_to_proto(await self._service.cancel(_user(context), command))

    async def GetBooking(
        self, request: booking_pb2.GetBookingRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Booking:
        booking = await self._service.get(
            _user(context), parse_id(request.booking_id, "booking_id")
        )
        return mapping.booking_to_proto(booking)

    async def ListBookings(
        self, request: booking_pb2.ListBookingsRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.ListBookingsResponse:
        user = _user(context)
        scope = f"bookings:{user}"
        before = decode_page_token(request.page_token, scope)
        limit = page_size(request.page_size, default=20, maximum=100)
        page = await self._service.list(user, _cursor(before), limit)
        token = ""
        if page.more:
            last = page.bookings[-1]
            token = encode_page_token(scope, [last.create_time.isoformat(), last.id])
        return mapping.bookings_page_to_proto(page, token)

    async def HandleStripeWebhook(
        self, request: httpbody_pb2.HttpBody, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        metadata = dict(
            (k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
        )
        signature = metadata.get("stripe-signature", "")
        if not signature:
            raise InvalidArgument(
                "the Stripe-Signature header is missing", reason=Reason.WEBHOOK_SIGNATURE_INVALID
            )
        await self._service.webhook(request.data, signature)
        return empty_pb2.Empty()


def service_binding(servicer: BookingServiceServicer) -> ServiceBinding:
    """How the shared server registers this servicer (``server.py`` wires it)."""
    return ServiceBinding(
        SERVICE_NAME,
        lambda server: booking_pb2_grpc.add_BookingServiceServicer_to_server(servicer, server),
    )
