"""Wiring of the search service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.search.v1 import search_pb2

from search_svc.adapters.engine import EventIndex, auth_from, connect
from search_svc.service import EventSearch
from search_svc.servicer import SearchServiceServicer
from search_svc.settings import SearchSettings
from ticketing_common.server import ServiceBinding, ServiceServer, build_server, generic_handler

SERVICE = search_pb2.DESCRIPTOR.services_by_name["SearchService"]
SERVICE_NAME = SERVICE.full_name


async def create_server(settings: SearchSettings) -> ServiceServer:
    client = connect(
        settings.search_url,
        request_timeout=settings.search_timeout_seconds,
        connections=settings.search_engine_threads,
        engine=settings.search_engine,
        auth=auth_from(settings),
    )
    index = EventIndex(client, threads=settings.search_engine_threads)
    servicer = SearchServiceServicer(EventSearch(index), timeout=settings.search_timeout_seconds)
    handler = generic_handler(SERVICE, servicer)
    binding = ServiceBinding(
        SERVICE_NAME, lambda server: server.add_generic_rpc_handlers((handler,))
    )
    return build_server(settings, [binding], cleanups=[index.close])
