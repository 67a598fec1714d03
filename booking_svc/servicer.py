"""gRPC edge of the booking service: proto <-> domain translation only.

Methods not defined here answer UNIMPLEMENTED (reason NOT_IMPLEMENTED) through the
shared interceptor until their issue lands.
"""

from __future__ import annotations

from ticketing.booking.v1 import booking_pb2_grpc


class BookingServiceServicer(booking_pb2_grpc.BookingServiceServicer):
    """Holds, confirmations with payment, bookings."""
