"""An event's queue settings, asked of the catalog over gRPC (``CatalogService.GetEvent``).

The catalog owns the events table; the queue never reads it. ``GetEvent`` with the BASIC view
is the catalog's cached event page without its ticket list, so a call is cheap. Every call has a
deadline; a catalog that is down or slow past it is UNAVAILABLE (DEPENDENCY_UNAVAILABLE), an
event it does not know NOT_FOUND (EVENT_NOT_FOUND). ``policy_cache.PolicyCache`` sits in front.
"""

from __future__ import annotations

import datetime as dt

import grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from queue_svc.domain import Policy
from ticketing_common.errors import NotFound, Reason, Unavailable
from ticketing_common.tls import TlsFiles, internal_channel

CATALOG_SERVICE = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
# gRPC backs off reconnecting up to 120 s by default: a catalog back after a long outage would
# stay unreachable for minutes. Two seconds at most between tries.
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def policy_of(event: catalog_pb2.Event) -> Policy:
    """The queue's view of a catalog event."""
    queue = event.queue_policy
    return Policy(
        event_id=event.id,
        enabled=queue.enabled,
        rate_per_minute=queue.admission_rate_per_minute,
        max_active=queue.max_active_users,
        admission_ttl_seconds=queue.admission_ttl_seconds,
        open_time=event.on_sale_time.ToDatetime(tzinfo=dt.UTC),
        end_time=event.end_time.ToDatetime(tzinfo=dt.UTC),
    )


class CatalogPolicies:
    """``ports.Policies`` over one channel to the catalog; ``tls`` is the queue's own
    certificate (mutual TLS, ``ticketing_common.tls``), None only in plaintext."""

    def __init__(self, address: str, tls: TlsFiles | None, *, timeout_seconds: float = 2.0) -> None:
        self.address = address
        self._timeout = timeout_seconds
        self._channel = internal_channel(address, tls, options=list(_CHANNEL_OPTIONS))
        self._stub = catalog_pb2_grpc.CatalogServiceStub(self._channel)

    async def get(self, event_id: str) -> Policy:
        request = catalog_pb2.GetEventRequest(event_id=event_id, view=catalog_pb2.EVENT_VIEW_BASIC)
        try:
            event = await self._stub.GetEvent(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    f"no event with id {event_id}",
                    reason=Reason.EVENT_NOT_FOUND,
                    metadata={"event_id": event_id},
                ) from exc
            raise Unavailable(
                f"the catalog did not answer for the event's queue settings ({exc.code().name})",
                metadata={"event_id": event_id, "dependency": CATALOG_SERVICE},
            ) from exc
        return policy_of(event)

    async def aclose(self) -> None:
        await self._channel.close()
