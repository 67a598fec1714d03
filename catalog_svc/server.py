"""Wiring of the catalog service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.catalog.v1 import catalog_pb2

from catalog_svc import mapping
from catalog_svc.adapters.availability_feed import (
    PostgresAvailabilityFeed,
    PostgresAvailabilitySource,
)
from catalog_svc.adapters.page_cache import RedisPageCache
from catalog_svc.adapters.postgres import CatalogRepository
from catalog_svc.availability import AvailabilityHub
from catalog_svc.metrics import AVAILABILITY_WATCHERS
from catalog_svc.service import Catalog, EventPages
from catalog_svc.servicer import CatalogServiceServicer
from catalog_svc.settings import CatalogSettings
from ticketing_common.db import open_pool
from ticketing_common.redis_client import open_redis
from ticketing_common.server import ServiceBinding, ServiceServer, build_server, generic_handler

SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"]
SERVICE_NAME = SERVICE.full_name


async def create_server(settings: CatalogSettings) -> ServiceServer:
    pool = await open_pool(settings.database_url, max_size=settings.db_pool_size, name="catalog")
    cache = open_redis(
        settings.redis_url,
        sentinels=settings.redis_sentinels,
        master_name=settings.redis_master_name,
    )
    store = CatalogRepository(pool)
    pages = EventPages(store, RedisPageCache(cache), mapping.render_event_page)
    # One LISTEN connection per process, fanned out to every watcher of every event.
    availability = AvailabilityHub(
        PostgresAvailabilitySource(pool),
        PostgresAvailabilityFeed(settings.database_url),
        mapping.encode_availability_update,
        coalesce_seconds=settings.availability_coalesce_seconds,
        message_budget=settings.availability_message_budget,
        on_watchers=AVAILABILITY_WATCHERS.set,
    )
    await availability.start()
    servicer = CatalogServiceServicer(Catalog(store, pages), availability)
    handler = generic_handler(
        SERVICE, servicer, raw_responses=("GetEvent", "GetEventPage", "WatchAvailability")
    )
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: server.add_generic_rpc_handlers((handler,))
    )

    async def close() -> None:
        await availability.close()
        await cache.aclose()
        await pool.close()

    return build_server(settings, [binding], cleanups=[close])
