"""The engine's request for a search or a completion: the query DSL is plain data, so it is
built (and tested) here, free of the engine's client.

Query shape, for speed on any engine (the embedded stand-in is slow on fuzzy matching):

* every restriction (type, place, date, upcoming) is a filter: no scoring, cacheable;
* the term is matched exactly on the names and the description, and with bounded fuzziness
  (``AUTO``: at most two edits, none in the first letter, at most 20 expansions per word) on
  one field that holds the three names, so a typo costs one fuzzy expansion per word, not four;
  exact matches score higher than fuzzy ones; a term of more than ``MAX_FUZZY_WORDS`` words is
  matched exactly only;
* paging resumes after the sort values of the last hit (``search_after``) or, by relevance, at
  an offset (see ``search_svc.domain``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from search_svc.documents import SUMMARY_FIELDS
from search_svc.domain import TOTAL_HITS_LIMIT, GeoPoint, SearchQuery, Sort, invalid
from ticketing_common.event_types import EVENT_TYPES

MAX_FUZZY_WORDS = 6
TYPE_FACETS = len(EVENT_TYPES)
CITY_FACETS = 20

# Exact matching: names weigh more than the description, the event's own name most.
_EXACT_FIELDS = ("name^3", "performer_name^3", "venue_name^2", "description")
_PREFIX_FIELDS = ("name.prefix^3", "performer_name.prefix^2", "venue_name.prefix")


def search_body(
    query: SearchQuery,
    *,
    size: int,
    now: dt.datetime,
    after: Sequence[Any] | None = None,
    origin: GeoPoint | None = None,
) -> dict[str, Any]:
    """The engine request for one page. ``size`` includes the one extra hit that tells whether
    a next page exists; ``origin`` is where distances are measured from (the coordinates, or a
    city's location when sorting by distance)."""
    body: dict[str, Any] = {
        "size": size,
        "track_total_hits": TOTAL_HITS_LIMIT,
        "_source": list(SUMMARY_FIELDS),
        "query": {"bool": {"filter": _filters(query, now)}},
        "sort": _sort(query.sort, origin or query.point),
        "aggs": {
            "type_facets": {"terms": {"field": "type", "size": TYPE_FACETS}},
            "city_facets": {"terms": {"field": "city", "size": CITY_FACETS}},
        },
    }
    if query.term:
        body["query"]["bool"]["must"] = [_text_query(query.term)]
        body["highlight"] = {
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            # The fuzzy part runs on "names": show its matches in the fields people read.
            "require_field_match": False,
            "fields": {
                "name": {"number_of_fragments": 0},
                "performer_name": {"number_of_fragments": 0},
                "venue_name": {"number_of_fragments": 0},
                "description": {"fragment_size": 160, "number_of_fragments": 2},
            },
        }
    if after is not None and query.sort is Sort.RELEVANCE:
        body["from"] = int(after[0])
        body["size"] = min(size, TOTAL_HITS_LIMIT - body["from"])
    elif after is not None:
        body["search_after"] = list(after)
    return body


def _filters(query: SearchQuery, now: dt.datetime) -> list[dict[str, Any]]:
    filters: list[dict[str, Any]] = []
    if query.type:
        filters.append({"term": {"type": query.type}})
    if query.point is not None:
        filters.append(
            {
                "geo_distance": {
                    "distance": f"{query.radius_km:g}km",
                    "location": query.point.as_engine(),
                }
            }
        )
    elif query.city:
        filters.append({"term": {"city_key": query.city}})
    window: dict[str, str] = {}
    if query.start_from is not None:
        window["gte"] = _iso(query.start_from)
    if query.start_before is not None:
        window["lt"] = _iso(query.start_before)
    if window:
        filters.append({"range": {"start_time": window}})
    if not query.include_past:
        filters.append({"range": {"start_time": {"gte": _iso(now)}}})
    return filters


def _text_query(term: str) -> dict[str, Any]:
    exact: dict[str, Any] = {
        "multi_match": {"query": term, "fields": list(_EXACT_FIELDS), "type": "best_fields"}
    }
    if len(term.split()) > MAX_FUZZY_WORDS:
        return exact
    fuzzy = {
        "match": {
            "names": {
                "query": term,
                "fuzziness": "AUTO",
                "prefix_length": 1,
                "max_expansions": 20,
            }
        }
    }
    return {"bool": {"should": [exact, fuzzy], "minimum_should_match": 1}}


def _sort(sort: Sort, origin: GeoPoint | None) -> list[Any]:
    tail: list[Any] = [{"start_time": "asc"}, {"event_id": "asc"}]
    if sort is Sort.RELEVANCE:
        return [{"_score": "desc"}, *tail]
    if sort is Sort.DISTANCE:
        if origin is None:
            raise invalid("sort", "sorting by distance needs a location")
        distance = {"location": origin.as_engine(), "order": "asc", "unit": "km"}
        return [{"_geo_distance": distance}, *tail]
    return tail


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def city_lookup_body(city: str) -> dict[str, Any]:
    """Where a city is: the location of any one of its venues."""
    return {"size": 1, "_source": ["location"], "query": {"term": {"city_key": city}}}


def suggest_body(prefix: str, *, size: int, now: dt.datetime) -> dict[str, Any]:
    """Upcoming events one of whose names has a word starting with each typed word. More
    events than suggestions are fetched: one event can yield up to three suggestions and
    several events share a performer or a venue."""
    return {
        "size": min(size * 4, 80),
        "_source": ["event_id", "name", "performer_name", "venue_name"],
        "query": {
            "bool": {
                "must": [
                    {
                        "multi_match": {
                            "query": prefix,
                            "fields": list(_PREFIX_FIELDS),
                            "operator": "and",
                        }
                    }
                ],
                "filter": [{"range": {"start_time": {"gte": _iso(now)}}}],
            }
        },
        "sort": [{"_score": "desc"}, {"start_time": "asc"}, {"event_id": "asc"}],
    }
