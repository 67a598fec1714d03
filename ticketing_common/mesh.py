"""The services of the mesh, written once.

Each public gRPC service is one row: its full gRPC name, the stack component that serves it
(also the name of its port in ``deploy/stack/ports.py``), the Python package started with
``python -m``, and the Envoy cluster the gateway routes it to. Everything that lists the
services derives from this table: reflection (``ticketing_common.server``), the stack's
processes and ``TICKETING_PEERS`` (``deploy/stack/components.py``) and the gateway's clusters
and REST transcoder (``deploy/stack/envoy_config.py``). Adding a service is adding a row here.

The table lives in ``ticketing_common`` because the services read it too; ``deploy`` imports
it, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeshService:
    """One public gRPC service of the mesh and where it runs."""

    grpc_name: str
    component: str
    package: str
    cluster: str


SERVICES: tuple[MeshService, ...] = (
    MeshService("ticketing.catalog.v1.CatalogService", "catalog", "catalog_svc", "catalog"),
    MeshService("ticketing.search.v1.SearchService", "search", "search_svc", "search"),
    MeshService("ticketing.booking.v1.BookingService", "booking", "booking_svc", "booking"),
    MeshService("ticketing.queue.v1.QueueService", "queue", "queue_svc", "queue"),
)

# Processes of the mesh that serve no public API (only health and metrics): component -> package.
WORKERS: dict[str, str] = {"cdc-worker": "cdc_worker"}

# The full gRPC names of the public services; reflection lists all of them on every service.
PUBLIC_SERVICES: tuple[str, ...] = tuple(s.grpc_name for s in SERVICES)
