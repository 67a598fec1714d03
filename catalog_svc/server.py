"""Wiring of the catalog service: the one place its parts are put together."""

from __future__ import annotations

from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from catalog_svc.servicer import CatalogServiceServicer
from catalog_svc.settings import CatalogSettings
from ticketing_common.server import ServiceBinding, ServiceServer, build_server

SERVICE_NAME = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name


async def create_server(settings: CatalogSettings) -> ServiceServer:
    servicer = CatalogServiceServicer()
    binding = ServiceBinding(
        SERVICE_NAME,
        lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server),
    )
    return build_server(settings, [binding])
