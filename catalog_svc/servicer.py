"""gRPC edge of the catalog: proto <-> domain translation and the caller's identity only; each
method calls one use case of ``catalog_svc.service.Catalog``. Errors are raised as domain
errors; the shared interceptor turns them into statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from catalog_svc import mapping
from catalog_svc.availability import AvailabilityHub
from catalog_svc.domain import RequestKey, parse_id
from catalog_svc.service import Catalog
from ticketing_common.identity import caller_from_metadata

# The REST event page may be cached by the gateway (and any HTTP cache) for one second: the
# staleness bound of the event view. gRPC clients ignore the header.
EVENT_PAGE_CACHE_CONTROL = "public, max-age=1"

_SERVICE = "/ticketing.catalog.v1.CatalogService/"

# Ticket JSON kept for the REST pages of this many events, up to this many tickets each
# (statuses that come and go add entries; past the cap an event's memo starts afresh).
_MEMO_EVENTS, _MEMO_TICKETS = 8, 300_000


def _operator(context: grpc.aio.ServicerContext) -> str:
    """The caller's user id, if an operator (else UNAUTHENTICATED / OPERATOR_REQUIRED)."""
    operator: str = caller_from_metadata(context.invocation_metadata()).require_operator()
    return operator


def _page_request(request: catalog_pb2.GetEventRequest) -> tuple[str, int, tuple[str, ...]]:
    """(event id, view with FULL for the default, read mask paths), checked."""
    event_id = parse_id(request.event_id, "event_id")
    paths = mapping.read_mask_paths(request.read_mask)
    view = request.view
    if view == catalog_pb2.EVENT_VIEW_UNSPECIFIED:
        view = catalog_pb2.EVENT_VIEW_FULL
    return event_id, view, paths


async def _page_headers(
    context: grpc.aio.ServicerContext, etag: str, *more: tuple[str, str]
) -> None:
    await context.send_initial_metadata(
        (("cache-control", EVENT_PAGE_CACHE_CONTROL), ("etag", f'"{etag}"'), *more)
    )


# The REST page revalidated: when the gateway's copy of a page has expired, its HTTP cache asks
# again with "if-none-match: <the copy's etag>". If the page is still that version, GetEventPage
# answers an empty body marked with this header, which the REST origin turns into a 304 (see
# deploy/stack/envoy_config.py, NOT_MODIFIED); the cache then serves its copy again for a
# second. The version is checked on every call as before (the change token in Redis), so the
# staleness bound stays; an expired copy costs a few bytes instead of the whole page.
NOT_MODIFIED_HEADER = "x-ticketing-not-modified"
_EMPTY_PAGE = mapping.http_body(mapping.JSON, b"")


def _not_modified(context: grpc.aio.ServicerContext, etag: str) -> bool:
    """True if the request's If-None-Match names this version of the page (RFC 9110 13.1.2:
    weak comparison, a list, or *)."""
    for key, value in context.invocation_metadata() or ():
        if key == "if-none-match":
            tags = {tag.strip().removeprefix("W/") for tag in value.split(",")}
            return "*" in tags or f'"{etag}"' in tags
    return False


class _Retriable(Protocol):
    """A write request that a client may retry (AIP-155)."""

    @property
    def request_id(self) -> str: ...

    def SerializeToString(self, *, deterministic: bool = ...) -> bytes: ...


def _key(operator: str, method: str, request: _Retriable) -> RequestKey:
    """The retry key of a write request: its request_id, bound to the request as sent."""
    return RequestKey(
        user_id=operator,
        method=_SERVICE + method,
        request_id=request.request_id,
        fingerprint=request.SerializeToString(),
    )


class CatalogServiceServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, availability: AvailabilityHub | None = None) -> None:
        self._catalog = catalog
        self._availability = availability
        # The printed tickets of the REST pages printed last (mapping.TicketJsonMemo).
        self._ticket_json: dict[str, mapping.TicketJsonMemo] = {}

    # --- reads -----------------------------------------------------------------------------

    def WatchAvailability(
        self, request: catalog_pb2.WatchAvailabilityRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        # Already encoded bytes (a raw response, like GetEvent's): one encoding per update,
        # shared by every watcher of the event. The hub's own iterator is handed to the
        # server as it is, not re-yielded here: one generator fewer for every message.
        event_id = parse_id(request.event_id, "event_id")
        assert self._availability is not None, "create_server wires the availability hub"
        return self._availability.watch(event_id)

    async def GetEvent(
        self, request: catalog_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        event_id, view, paths = _page_request(request)
        if view == catalog_pb2.EVENT_VIEW_FULL and not paths:
            page = await self._catalog.event_page(event_id)
            payload = page.payload
        else:
            page, payload = await self._catalog.event_page_view(
                event_id,
                f"{view}:{','.join(paths)}",
                lambda full: mapping.event_view(full, view, paths),
            )
        await _page_headers(context, page.etag)
        return payload

    async def GetEventPage(
        self, request: catalog_pb2.GetEventRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        event_id, view, paths = _page_request(request)

        def as_json(full: bytes) -> bytes:
            if view != catalog_pb2.EVENT_VIEW_FULL or paths:
                full = mapping.event_view(full, view, paths)
            memo = self._ticket_json.pop(event_id, None)
            if memo is None or len(memo) > _MEMO_TICKETS:
                memo = {}  # a new event, or one whose old statuses have piled up
            self._ticket_json[event_id] = memo  # the most recently printed last
            while len(self._ticket_json) > _MEMO_EVENTS:
                del self._ticket_json[next(iter(self._ticket_json))]
            return mapping.http_body(mapping.JSON, mapping.event_json(full, memo))

        page, payload = await self._catalog.event_page_view(
            event_id, f"json:{view}:{','.join(paths)}", as_json
        )
        if _not_modified(context, page.etag):
            await _page_headers(context, page.etag, (NOT_MODIFIED_HEADER, "1"))
            return _EMPTY_PAGE
        await _page_headers(context, page.etag)
        return payload

    async def ListEvents(
        self, request: catalog_pb2.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListEventsResponse:
        where = mapping.event_filter_from_proto(request)
        if request.view == catalog_pb2.EVENT_VIEW_FULL:
            full = await self._catalog.list_event_pages(
                where, page_size=request.page_size, page_token=request.page_token
            )
            response = catalog_pb2.ListEventsResponse(next_page_token=full.next_page_token)
            for page in full.pages:
                response.events.add().ParseFromString(page.payload)
            return response
        listed = await self._catalog.list_events(
            where, page_size=request.page_size, page_token=request.page_token
        )
        return catalog_pb2.ListEventsResponse(
            events=[
                mapping.event_to_proto(
                    e.event, venue=e.venue, performer=e.performer, summary=e.summary
                )
                for e in listed.events
            ],
            next_page_token=listed.next_page_token,
        )

    async def ListTickets(
        self, request: catalog_pb2.ListTicketsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.ListTicketsResponse:
        listed = await self._catalog.list_tickets(
            parse_id(request.event_id, "event_id"),
            section=request.section,
            status=mapping.STATUS_FROM_PROTO.get(request.status),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        event = listed.event
        return catalog_pb2.ListTicketsResponse(
            tickets=[mapping.ticket_to_proto(t, event.id, event.currency) for t in listed.tickets],
            next_page_token=listed.next_page_token,
        )

    async def GetVenue(
        self, request: catalog_pb2.GetVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        venue = await self._catalog.venue(parse_id(request.venue_id, "venue_id"))
        return mapping.venue_to_proto(venue)

    async def GetPerformer(
        self, request: catalog_pb2.GetPerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        performer = await self._catalog.performer(parse_id(request.performer_id, "performer_id"))
        return mapping.performer_to_proto(performer)

    # --- operator writes ---------------------------------------------------------------------

    async def CreateVenue(
        self, request: catalog_pb2.CreateVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        key = _key(_operator(context), "CreateVenue", request)
        venue = await self._catalog.create_venue(key, mapping.venue_from_proto(request.venue))
        return mapping.venue_to_proto(venue)

    async def UpdateVenue(
        self, request: catalog_pb2.UpdateVenueRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Venue:
        _operator(context)
        venue = await self._catalog.update_venue(
            parse_id(request.venue.id, "venue.id"), mapping.venue_update(request)
        )
        return mapping.venue_to_proto(venue)

    async def CreatePerformer(
        self, request: catalog_pb2.CreatePerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        key = _key(_operator(context), "CreatePerformer", request)
        performer = await self._catalog.create_performer(
            key, mapping.performer_from_proto(request.performer)
        )
        return mapping.performer_to_proto(performer)

    async def UpdatePerformer(
        self, request: catalog_pb2.UpdatePerformerRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Performer:
        _operator(context)
        performer = await self._catalog.update_performer(
            parse_id(request.performer.id, "performer.id"), mapping.performer_update(request)
        )
        return mapping.performer_to_proto(performer)

    async def CreateEvent(
        self, request: catalog_pb2.CreateEventRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Event:
        key = _key(_operator(context), "CreateEvent", request)
        event = await self._catalog.create_event(key, mapping.event_from_proto(request.event))
        return mapping.event_to_proto(event)

    async def UpdateEvent(
        self, request: catalog_pb2.UpdateEventRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.Event:
        _operator(context)
        event = await self._catalog.update_event(
            parse_id(request.event.id, "event.id"), mapping.event_update(request)
        )
        return mapping.event_to_proto(event)

    async def GenerateTickets(
        self, request: catalog_pb2.GenerateTicketsRequest, context: grpc.aio.ServicerContext
    ) -> catalog_pb2.GenerateTicketsResponse:
        key = _key(_operator(context), "GenerateTickets", request)
        generated = await self._catalog.generate_tickets(
            key, parse_id(request.event_id, "event_id"), dict(request.tier_prices_minor)
        )
        return catalog_pb2.GenerateTicketsResponse(
            ticket_count=generated.count, event=mapping.basic_view(generated.page.payload)
        )
