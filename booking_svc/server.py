"""Wiring of the booking service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc

from booking_svc.servicer import BookingServiceServicer
from booking_svc.settings import BookingSettings
from ticketing_common.server import ServiceBinding, ServiceServer, build_server

SERVICE_NAME = booking_pb2.DESCRIPTOR.services_by_name["BookingService"].full_name


async def create_server(settings: BookingSettings) -> ServiceServer:
    servicer = BookingServiceServicer()
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: booking_pb2_grpc.add_BookingServiceServicer_to_server(servicer, server),
    )
    return build_server(settings, [binding])
