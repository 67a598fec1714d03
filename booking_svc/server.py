"""Wiring of the booking service: the one place its parts are put together."""

from __future__ import annotations

import datetime as dt

from booking_svc.adapters.holds import HoldLocks
from booking_svc.adapters.lanes import RedisLanes
from booking_svc.adapters.page_cache import EventPageMarks
from booking_svc.adapters.payments import StripePayments
from booking_svc.adapters.postgres import BookingRepository
from booking_svc.best_available import PictureBook
from booking_svc.service import BookingService
from booking_svc.servicer import BookingServiceServicer, service_binding
from booking_svc.settings import BookingSettings
from ticketing_common.db import open_pool
from ticketing_common.redis_client import open_redis
from ticketing_common.server import ServiceServer, build_server


async def create_server(settings: BookingSettings) -> ServiceServer:
    pool = await open_pool(settings.database_url, max_size=settings.db_pool_size, name="booking")
    cache = open_redis(
        settings.redis_url,
        sentinels=settings.redis_sentinels,
        master_name=settings.redis_master_name,
    )
    hold = dt.timedelta(seconds=settings.hold_seconds)
    payments = StripePayments(
        settings.stripe_api_key,
        settings.stripe_api_base,
        webhook_secret=settings.stripe_webhook_secret,
    )
    store = BookingRepository(pool)
    pictures = (
        PictureBook(
            store,
            lane=RedisLanes(cache).take,
            refresh_seconds=settings.best_available_refresh_seconds,
        )
        if settings.best_available_picture
        else None
    )
    service = BookingService(
        store,
        HoldLocks(cache, int(hold.total_seconds() * 1000)),
        payments,
        EventPageMarks(cache),
        admission_key=settings.admission_key,
        hold_duration=hold,
        pictures=pictures,
    )
    binding = service_binding(BookingServiceServicer(service))

    async def close() -> None:
        await payments.close()
        await cache.aclose()
        await pool.close()

    return build_server(settings, [binding], cleanups=[close])
