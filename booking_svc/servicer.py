"""gRPC edge of booking: proto in, caller from the gateway's identity headers, proto out."""

from __future__ import annotations

import grpc
from google.api import httpbody_pb2
from google.protobuf import empty_pb2
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc

from booking_svc.service import BookingService, booking_to_proto
from ticketing_common.errors import InvalidArgument, Reason
from ticketing_common.identity import caller_from_metadata
from ticketing_common.pagination import (
    decode_page_token,
    encode_page_token,
    page_size,
    parse_id,
)


def _user(context: grpc.aio.ServicerContext) -> str:
    return caller_from_metadata(context.invocation_metadata()).require_user()


class BookingServiceServicer(booking_pb2_grpc.BookingServiceServicer):
    def __init__(self, service: BookingService) -> None:
        self._service = service

    async def ReserveTicket(
        self, request: booking_pb2.ReserveTicketRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        return await self._service.reserve(_user(context), request)

    async def ReserveBestAvailable(
        self, request: booking_pb2.ReserveBestAvailableRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        return await self._service.reserve_best(_user(context), request)

    async def ConfirmBooking(
        self, request: booking_pb2.ConfirmBookingRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Booking:
        return await self._service.confirm(_user(context), request)

    async def CancelReservation(
        self, request: booking_pb2.CancelReservationRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Reservation:
        return await self._service.cancel(_user(context), request)

    async def GetBooking(
        self, request: booking_pb2.GetBookingRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.Booking:
        return await self._service.get(_user(context), parse_id(request.booking_id, "booking_id"))

    async def ListBookings(
        self, request: booking_pb2.ListBookingsRequest, context: grpc.aio.ServicerContext
    ) -> booking_pb2.ListBookingsResponse:
        user = _user(context)
        scope = f"bookings:{user}"
        before = decode_page_token(request.page_token, scope)
        limit = page_size(request.page_size, default=20, maximum=100)
        records = await self._service.list(user, tuple(before) if before else None, limit + 1)
        response = booking_pb2.ListBookingsResponse()
        if len(records) > limit:
            records = records[:limit]
            last = records[-1]
            response.next_page_token = encode_page_token(
                scope, [last.create_time.isoformat(), last.id]
            )
        response.bookings.extend(booking_to_proto(r) for r in records)
        return response

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
