"""Wiring of the queue service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.queue.v1 import queue_pb2

from queue_svc.adapters.catalog import CatalogPolicies
from queue_svc.adapters.redis_store import QueueStore
from queue_svc.admitter import Admitter
from queue_svc.policy_cache import PolicyCache
from queue_svc.service import Admissions, QueueService
from queue_svc.servicer import QueueServiceServicer
from queue_svc.settings import CATALOG_SERVICE, QueueSettings
from queue_svc.watch import WatchHub
from ticketing_common.redis_client import open_redis
from ticketing_common.server import ServiceBinding, ServiceServer, build_server, generic_handler

SERVICE = queue_pb2.DESCRIPTOR.services_by_name["QueueService"]
SERVICE_NAME = SERVICE.full_name


async def create_server(settings: QueueSettings) -> ServiceServer:
    client = open_redis(
        settings.redis_url,
        sentinels=settings.redis_sentinels,
        master_name=settings.redis_master_name,
    )
    store = QueueStore(
        client,
        grace_seconds=settings.queue_grace_seconds,
        user_buckets=settings.queue_user_buckets,
    )
    catalog = CatalogPolicies(
        settings.peers[CATALOG_SERVICE],
        settings.tls,
        timeout_seconds=settings.queue_catalog_timeout_seconds,
    )
    policies = PolicyCache(
        catalog,
        ttl_seconds=settings.queue_policy_cache_seconds,
        stale_seconds=settings.queue_policy_stale_seconds,
    )
    service = QueueService(store, policies, Admissions(settings.admission_key))
    hub = WatchHub(service, interval_seconds=settings.queue_watch_interval_seconds)
    admitter = Admitter(store, policies, interval_seconds=settings.queue_admit_interval_seconds)
    handler = generic_handler(SERVICE, QueueServiceServicer(service, hub))
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: server.add_generic_rpc_handlers((handler,))
    )

    async def close() -> None:
        await store.aclose()
        await client.aclose()
        await catalog.aclose()

    return build_server(settings, [binding], cleanups=[close], background=[admitter.run])
