"""gRPC edge of the catalog: proto <-> domain translation and the caller's identity only.
Errors are raised as domain errors; the shared interceptor turns them into statuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import field_mask_pb2
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from catalog_svc import mapping
from catalog_svc.adapters.postgres import CatalogRepository, EventFilter
from catalog_svc.availability import AvailabilityHub
from catalog_svc.domain import (
    TicketSummary,
    decode_page_token,
    encode_page_token,
    ensure_no_inventory,
    generate_inventory,
    page_size,
    parse_id,
    query_fingerprint,
)
from catalog_svc.service import EventPages, basic_view
from ticketing_common.errors import InvalidArgument
from ticketing_common.idempotency import run_once
from ticketing_common.identity import caller_from_metadata

# The REST event page may be cached by the gateway (and any HTTP cache) for one second: the
# staleness bound of the event view. gRPC clients ignore the header.
EVENT_PAGE_CACHE_CONTROL = "public, max-age=1"

_VENUE_WRITABLE = (
    "name",
    "address",
    "city",
    "region",
    "country_code",
    "location",
    "time_zone",
    "seat_map",
)
_PERFORMER_WRITABLE = ("name", "description", "genre")
_EVENT_WRITABLE = (
    "name",
    "description",
    "type",
    "venue_id",
    "performer_id",
    "start_time",
    "end_time",
    "on_sale_time",
    "queue_policy",
    "max_tickets_per_user",
    "currency_code",
)
_SERVICE = "/ticketing.catalog.v1.CatalogService/"


def _caller(context: grpc.aio.ServicerContext) -> Any:
    return caller_from_metadata(context.invocation_metadata())


def _merge(
    current: Any, update: Any, mask: field_mask_pb2.FieldMask, writable: tuple[str, ...]
) -> Any:
    """``current`` with the fields named in the mask (all writable fields when empty) taken
    from ``update`` (AIP-134)."""
    paths = list(mask.paths) or list(writable)
    unknown = [p for p in paths if p.split(".")[0] not in writable]
    if unknown:
        raise InvalidArgument(
            f"cannot update: {', '.join(unknown)}", metadata={"field": "update_mask"}
        )
    merged = type(current)()
    merged.CopyFrom(current)
    field_mask_pb2.FieldMask(paths=paths).MergeMessage(
        update, merged, replace_message_field=True, replace_repeated_field=True
    )
    return merged


class CatalogServiceServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(
        self,
        repository: CatalogRepository,
        pages: EventPages,
        availability: AvailabilityHub | None = None,
    ) -> None:
        self._repository = repository
        self._pages = pages
        self._availability = availability

    # --- reads -----------------------------------------------------------------------------

    async def WatchAvailability(
        self, request: catalog_pb2.WatchAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        # Already encoded: one encoding per update, shared by every watcher of the event.
        event_id = parse_id(request.event_id, "event_id")
        assert self._availability is not None, "create_server wires the availability hub"
        async for data in self._availability.watch(event_id):
            yield data

    async def GetEvent(
        self, request: catalog_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        event_id = parse_id(request.event_id, "event_id")
        page = await self._pages.get(event_id)
        await context.send_initial_metadata(
            (("cache-control", EVENT_PAGE_CACHE_CONTROL), ("etag", f'"{page.etag}"'))
        )
        if request.view == catalog_pb2.EVENT_VIEW_BASIC:
            return basic_view(page)
        return page.payload

    async def ListEvents(
        self, request: catalog_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListEventsResponse:
        where = EventFilter(
            performer_id=parse_id(request.performer_id, "performer_id")
            if request.performer_id
            else None,
            venue_id=parse_id(request.venue_id, "venue_id") if request.venue_id else None,
            type=mapping.EVENT_TYPE_FROM_PROTO.get(request.type),
            start_after=request.start_time_after.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("start_time_after")
            else None,
            start_before=request.start_time_before.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("start_time_before")
            else None,
        )
        fingerprint = query_fingerprint("events", dataclasses.astuple(where))
        after = decode_page_token(request.page_token, fingerprint)
        limit = page_size(request.page_size, default=50, maximum=500)
        rows = await self._repository.list_events(where, tuple(after) if after else None, limit + 1)
        response = catalog_pb2.ListEventsResponse()
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1][0]
            response.next_page_token = encode_page_token(
                fingerprint, [last.start_time.isoformat(), last.id]
            )
        if request.view == catalog_pb2.EVENT_VIEW_FULL:
            for event, _, _ in rows:
                page = await self._pages.get(event.id)
                response.events.add().ParseFromString(page.payload)
            return response
        summaries = await self._repository.summaries([e.id for e, _, _ in rows])
        for event, venue, performer in rows:
            response.events.append(
                mapping.event_to_proto(
                    event,
                    venue=venue,
                    performer=performer,
                    summary=summaries.get(event.id) or TicketSummary(),
                )
            )
        return response

    async def ListTickets(
        self, request: catalog_pb2.ListTicketsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListTicketsResponse:
        event_id = parse_id(request.event_id, "event_id")
        status = mapping.STATUS_FROM_PROTO.get(request.status)
        fingerprint = query_fingerprint("tickets", event_id, request.section, status)
        after = decode_page_token(request.page_token, fingerprint)
        limit = page_size(request.page_size, default=500, maximum=5000)
        event = await self._repository.get_event(event_id)
        tickets = await self._repository.list_tickets(
            event_id,
            section=request.section or None,
            status=status,
            after=tuple(after) if after else None,
            limit=limit + 1,
        )
        response = catalog_pb2.ListTicketsResponse()
        if len(tickets) > limit:
            tickets = tickets[:limit]
            last = tickets[-1]
            response.next_page_token = encode_page_token(
                fingerprint, [last.section, last.row, last.seat]
            )
        response.tickets.extend(
            mapping.ticket_to_proto(t, event_id, event.currency) for t in tickets
        )
        return response

    async def GetVenue(
        self, request: catalog_pb2.GetVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        venue = await self._repository.get_venue(parse_id(request.venue_id, "venue_id"))
        return mapping.venue_to_proto(venue)

    async def GetPerformer(
        self, request: catalog_pb2.GetPerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        performer = await self._repository.get_performer(
            parse_id(request.performer_id, "performer_id")
        )
        return mapping.performer_to_proto(performer)

    # --- operator writes ---------------------------------------------------------------------

    async def CreateVenue(
        self, request: catalog_pb2.CreateVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        operator = _caller(context).require_operator()
        venue = mapping.venue_from_proto(request.venue)
        venue.validate()
        async with self._repository.write() as tx:

            async def create() -> bytes:
                return mapping.venue_to_proto(await tx.insert_venue(venue)).SerializeToString()

            payload = await run_once(
                tx.conn,
                user_id=operator,
                method=_SERVICE + "CreateVenue",
                request_id=request.request_id,
                request=request.SerializeToString(),
                action=create,
            )
        return catalog_pb2.Venue.FromString(payload)

    async def UpdateVenue(
        self, request: catalog_pb2.UpdateVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        _caller(context).require_operator()
        venue_id = parse_id(request.venue.id, "venue.id")
        current = mapping.venue_to_proto(await self._repository.get_venue(venue_id))
        merged = _merge(current, request.venue, request.update_mask, _VENUE_WRITABLE)
        venue = mapping.venue_from_proto(merged, venue_id)
        venue.validate()
        async with self._repository.write() as tx:
            updated, event_ids = await tx.update_venue(venue)
        await self._pages.changed(*event_ids)
        return mapping.venue_to_proto(updated)

    async def CreatePerformer(
        self, request: catalog_pb2.CreatePerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        operator = _caller(context).require_operator()
        performer = mapping.performer_from_proto(request.performer)
        performer.validate()
        async with self._repository.write() as tx:

            async def create() -> bytes:
                created = await tx.insert_performer(performer)
                return mapping.performer_to_proto(created).SerializeToString()

            payload = await run_once(
                tx.conn,
                user_id=operator,
                method=_SERVICE + "CreatePerformer",
                request_id=request.request_id,
                request=request.SerializeToString(),
                action=create,
            )
        return catalog_pb2.Performer.FromString(payload)

    async def UpdatePerformer(
        self, request: catalog_pb2.UpdatePerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        _caller(context).require_operator()
        performer_id = parse_id(request.performer.id, "performer.id")
        current = mapping.performer_to_proto(await self._repository.get_performer(performer_id))
        merged = _merge(current, request.performer, request.update_mask, _PERFORMER_WRITABLE)
        performer = mapping.performer_from_proto(merged, performer_id)
        performer.validate()
        async with self._repository.write() as tx:
            updated, event_ids = await tx.update_performer(performer)
        await self._pages.changed(*event_ids)
        return mapping.performer_to_proto(updated)

    async def CreateEvent(
        self, request: catalog_pb2.CreateEventRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Event:
        operator = _caller(context).require_operator()
        event = mapping.event_from_proto(request.event)
        event.validate()
        async with self._repository.write() as tx:

            async def create() -> bytes:
                return mapping.event_to_proto(await tx.insert_event(event)).SerializeToString()

            payload = await run_once(
                tx.conn,
                user_id=operator,
                method=_SERVICE + "CreateEvent",
                request_id=request.request_id,
                request=request.SerializeToString(),
                action=create,
            )
        return catalog_pb2.Event.FromString(payload)

    async def UpdateEvent(
        self, request: catalog_pb2.UpdateEventRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Event:
        _caller(context).require_operator()
        event_id = parse_id(request.event.id, "event.id")
        current = mapping.event_to_proto(await self._repository.get_event(event_id))
        merged = _merge(current, request.event, request.update_mask, _EVENT_WRITABLE)
        event = mapping.event_from_proto(merged, event_id)
        event.validate()
        async with self._repository.write() as tx:
            updated = await tx.update_event(event)
        await self._pages.changed(event_id)
        return mapping.event_to_proto(updated)

    async def GenerateTickets(
        self, request: catalog_pb2.GenerateTicketsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GenerateTicketsResponse:
        operator = _caller(context).require_operator()
        event_id = parse_id(request.event_id, "event_id")
        async with self._repository.write() as tx:

            async def generate() -> bytes:
                event, existing = await tx.lock_event(event_id)
                ensure_no_inventory(existing)
                venue = await self._repository.get_venue(event.venue_id)
                tickets = generate_inventory(venue.seat_map, dict(request.tier_prices_minor))
                await tx.insert_tickets(event, tickets)
                return catalog_pb2.GenerateTicketsResponse(
                    ticket_count=len(tickets)
                ).SerializeToString()

            payload = await run_once(
                tx.conn,
                user_id=operator,
                method=_SERVICE + "GenerateTickets",
                request_id=request.request_id,
                request=request.SerializeToString(),
                action=generate,
            )
        await self._pages.changed(event_id)
        response = catalog_pb2.GenerateTicketsResponse.FromString(payload)
        response.event.CopyFrom(basic_view(await self._pages.get(event_id)))
        return response
