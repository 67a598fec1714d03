"""gRPC edge of the search service: proto <-> domain translation only.
Errors are raised as domain errors; the shared interceptor turns them into statuses."""

from __future__ import annotations

import grpc
from ticketing.search.v1 import search_pb2, search_pb2_grpc

from search_svc import mapping
from search_svc.request import parse_prefix, parse_search, search_page_size, suggestion_count
from search_svc.service import EventSearch


class SearchServiceServicer(search_pb2_grpc.SearchServiceServicer):
    """Event search over the index the CDC worker maintains."""

    def __init__(self, search: EventSearch, *, timeout: float) -> None:
        self._search = search
        self._timeout = timeout

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining: float | None = context.time_remaining()
        if remaining is None:
            return self._timeout
        return max(0.05, min(self._timeout, remaining - 0.05))

    async def SearchEvents(
        self, request: search_pb2.SearchEventsRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchEventsResponse:
        query = parse_search(
            term=request.term,
            location=request.location,
            radius_km=request.radius_km,
            type=request.type,
            date=request.date,
            include_past=request.include_past,
            sort=mapping.SORT_FROM_PROTO.get(request.sort),
        )
        result = await self._search.search(
            query,
            page_size=search_page_size(request.page_size),
            page_token=request.page_token,
            timeout=self._deadline(context),
        )
        return mapping.page_to_proto(result.page, result.next_page_token)

    async def SuggestEvents(
        self, request: search_pb2.SuggestEventsRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SuggestEventsResponse:
        prefix = parse_prefix(request.prefix)
        found = await self._search.suggest(
            prefix,
            size=suggestion_count(request.page_size),
            timeout=self._deadline(context),
        )
        return mapping.suggestions_to_proto(found)
