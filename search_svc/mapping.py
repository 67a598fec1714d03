"""Translation between search protos and domain objects, nothing else."""

from __future__ import annotations

from google.protobuf import timestamp_pb2
from ticketing.common.v1 import common_pb2
from ticketing.search.v1 import search_pb2

from search_svc.domain import Sort
from search_svc.results import Hit, SearchPage, Suggestion
from ticketing_common.event_types import EVENT_TYPE_TO_PROTO

SORT_FROM_PROTO: dict[int, Sort | None] = {
    search_pb2.SEARCH_SORT_UNSPECIFIED: None,
    search_pb2.SEARCH_SORT_RELEVANCE: Sort.RELEVANCE,
    search_pb2.SEARCH_SORT_DATE: Sort.DATE,
    search_pb2.SEARCH_SORT_DISTANCE: Sort.DISTANCE,
}


def summary_to_proto(hit: Hit) -> search_pb2.EventSummary:
    proto = search_pb2.EventSummary(
        event_id=hit.event_id,
        name=hit.name,
        type=EVENT_TYPE_TO_PROTO.get(hit.type, 0),  # type: ignore[arg-type]
        performer_id=hit.performer_id,
        performer_name=hit.performer_name,
        venue_id=hit.venue_id,
        venue_name=hit.venue_name,
        city=hit.city,
        country_code=hit.country_code,
        available_tickets=hit.available_tickets,
        sold_out=hit.sold_out,
    )
    if hit.start_time is not None:
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(hit.start_time)
        proto.start_time.CopyFrom(ts)
    if hit.location is not None:
        proto.location.CopyFrom(
            common_pb2.GeoPoint(latitude=hit.location.latitude, longitude=hit.location.longitude)
        )
    if hit.min_available_price_minor is not None and not hit.sold_out:
        proto.min_available_price.CopyFrom(
            common_pb2.Money(currency_code=hit.currency, amount_minor=hit.min_available_price_minor)
        )
    if hit.distance_km is not None:
        proto.distance_km = hit.distance_km
    for field, fragments in hit.highlights.items():
        proto.highlights[field].fragments.extend(fragments)
    return proto


def page_to_proto(page: SearchPage, next_page_token: str) -> search_pb2.SearchEventsResponse:
    return search_pb2.SearchEventsResponse(
        events=[summary_to_proto(hit) for hit in page.hits],
        next_page_token=next_page_token,
        total_size=page.total,
        type_facets=[search_pb2.FacetCount(value=v, count=c) for v, c in page.type_facets],
        city_facets=[search_pb2.FacetCount(value=v, count=c) for v, c in page.city_facets],
    )


def suggestions_to_proto(found: list[Suggestion]) -> search_pb2.SuggestEventsResponse:
    return search_pb2.SuggestEventsResponse(
        suggestions=[
            search_pb2.Suggestion(text=s.text, kind=s.kind, event_id=s.event_id) for s in found
        ]
    )
