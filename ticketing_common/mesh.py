"""The services of the mesh, written once.

Each public gRPC service is one row: its full gRPC name, the stack component that serves it
(also the name of its port in ``deploy/stack/ports.py``), the Python package started with
``python -m``, the Envoy cluster the gateway routes it to, and how long the gateway waits for
one of its calls. Everything that lists the services derives from this table: reflection
(``ticketing_common.server``), the stack's processes and ``TICKETING_PEERS``
(``deploy/stack/components.py``), and the gateway's clusters, routes and REST transcoder
(``deploy/stack/envoy_config.py``). Adding a service is adding a row here.

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
    # The gateway's route timeout for a call (an Envoy duration). Booking waits for the payment
    # provider; the queue's watch stream has its own route without one.
    timeout: str


SERVICES: tuple[MeshService, ...] = (
    # grpc_name, component, package, cluster, timeout
    MeshService("ticketing.catalog.v1.CatalogService", "catalog", "catalog_svc", "catalog", "15s"),
    MeshService("ticketing.search.v1.SearchService", "search", "search_svc", "search", "10s"),
    MeshService("ticketing.booking.v1.BookingService", "booking", "booking_svc", "booking", "30s"),
    MeshService("ticketing.queue.v1.QueueService", "queue", "queue_svc", "queue", "10s"),
)

# Processes of the mesh that serve no public API (only health and metrics): component -> package.
WORKERS: dict[str, str] = {"cdc-worker": "cdc_worker"}
# The CDC workers run active/standby: this health service is SERVING only on the one that holds
# the slot's lock and streams (``ticketing status`` shows it as the role).
CDC_ACTIVE_HEALTH = "ticketing.cdc_worker.Active"

# The full gRPC names of the public services; reflection lists all of them on every service.
PUBLIC_SERVICES: tuple[str, ...] = tuple(s.grpc_name for s in SERVICES)
