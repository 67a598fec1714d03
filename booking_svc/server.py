"""Wiring of the booking service: the one place its parts are put together."""

from __future__ import annotations

import datetime as dt

from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc

from booking_svc.adapters.holds import HoldLocks
from booking_svc.adapters.payments import StripePayments
from booking_svc.adapters.postgres import BookingRepository
from booking_svc.service import BookingService
from booking_svc.servicer import BookingServiceServicer
from booking_svc.settings import BookingSettings
from ticketing_common.db import open_pool
from ticketing_common.redis_client import open_redis
from ticketing_common.server import ServiceBinding, ServiceServer, build_server

SERVICE_NAME = booking_pb2.DESCRIPTOR.services_by_name["BookingService"].full_name


async def create_server(settings: BookingSettings) -> ServiceServer:
    pool = await open_pool(settings.database_url, max_size=settings.db_pool_size, name="booking")
    cache = open_redis(
        settings.redis_url,
        sentinels=settings.redis_sentinels,
        master_name=settings.redis_master_name,
    )
    hold = dt.timedelta(seconds=settings.hold_seconds)
    service = BookingService(
        BookingRepository(pool),
        HoldLocks(cache, int(hold.total_seconds() * 1000)),
        StripePayments(settings.stripe_api_key, settings.stripe_api_base),
        cache,
        admission_key=settings.admission_key,
        webhook_secret=settings.stripe_webhook_secret,
        hold_duration=hold,
    )
    servicer = BookingServiceServicer(service)
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: booking_pb2_grpc.add_BookingServiceServicer_to_server(servicer, server),
    )

    async def close() -> None:
        await cache.aclose()
        await pool.close()

    return build_server(settings, [binding], cleanups=[close])
