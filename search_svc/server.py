"""Wiring of the search service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.search.v1 import search_pb2, search_pb2_grpc

from search_svc.servicer import SearchServiceServicer
from search_svc.settings import SearchSettings
from ticketing_common.server import ServiceBinding, ServiceServer, build_server

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name


async def create_server(settings: SearchSettings) -> ServiceServer:
    servicer = SearchServiceServicer()
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: search_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server),
    )
    return build_server(settings, [binding])
