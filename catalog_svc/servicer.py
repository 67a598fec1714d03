"""gRPC edge of the catalog service: proto <-> domain translation only.

Methods not defined here answer UNIMPLEMENTED (reason NOT_IMPLEMENTED) through the
shared interceptor until their issue lands.
"""

from __future__ import annotations

from ticketing.catalog.v1 import catalog_pb2_grpc


class CatalogServiceServicer(catalog_pb2_grpc.CatalogServiceServicer):
    """Event pages and catalog management."""
