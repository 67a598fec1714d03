"""Search rules, free of gRPC and of the search engine's client.

What a valid search is (term, place, type, date, sort, paging), how it becomes an engine query
(the query DSL is plain data, so it is built and tested here), how an engine answer becomes
results, facets and the next page token, and how completions are picked for search-as-you-type.

Query shape, for speed on any engine (the embedded stand-in is slow on fuzzy matching):

* every restriction (type, place, date, upcoming) is a filter: no scoring, cacheable;
* the term is matched exactly on the names and the description, and with bounded fuzziness
  (``AUTO``: at most two edits, none in the first letter, at most 20 expansions per word) on
  one field that holds the three names, so a typo costs one fuzzy expansion per word, not four;
  exact matches score higher than fuzzy ones; a term of more than ``MAX_FUZZY_WORDS`` words is
  matched exactly only;
* paging by date or distance uses ``search_after`` on the sort values plus the event id, so a
  page boundary holds while documents change; paging by relevance uses the offset (at most
  ``TOTAL_HITS_LIMIT`` deep): scores are sums of floats that an engine may round differently
  in its answer than in its comparisons (the embedded one does), and resuming after a rounded
  score repeats or skips results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from search_svc.documents import SUMMARY_FIELDS, city_key, fold, parse_time
from ticketing_common.errors import InvalidArgument, Reason
from ticketing_common.event_types import EVENT_TYPES
from ticketing_common.pagination import (
    decode_page_token,
    encode_page_token,
    page_size,
    query_fingerprint,
)

MAX_TERM_CHARS = 256
MAX_LOCATION_CHARS = 200
MAX_FUZZY_WORDS = 6
DEFAULT_RADIUS_KM = 50.0
MAX_RADIUS_KM = 20_000.0
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PREFIX_CHARS = 100
DEFAULT_SUGGESTIONS = 8
MAX_SUGGESTIONS = 20
# Exact up to this many; beyond it the total says "at least".
TOTAL_HITS_LIMIT = 10_000
TYPE_FACETS = len(EVENT_TYPES)
CITY_FACETS = 20
EARTH_RADIUS_KM = 6371.0088

_COORDINATES = re.compile(r"^\s*([+-]?\d{1,3}(?:\.\d+)?)\s*,\s*([+-]?\d{1,3}(?:\.\d+)?)\s*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WORDS = re.compile(r"\w+")

# Exact matching: names weigh more than the description, the event's own name most.
_EXACT_FIELDS = ("name^3", "performer_name^3", "venue_name^2", "description")
_PREFIX_FIELDS = ("name.prefix^3", "performer_name.prefix^2", "venue_name.prefix")
_HIGHLIGHTED = ("name", "performer_name", "venue_name", "description")


class Sort(enum.Enum):
    RELEVANCE = "relevance"
    DATE = "date"
    DISTANCE = "distance"


@dataclasses.dataclass(frozen=True, slots=True)
class GeoPoint:
    latitude: float
    longitude: float

    def as_engine(self) -> dict[str, float]:
        return {"lat": self.latitude, "lon": self.longitude}


@dataclasses.dataclass(frozen=True, slots=True)
class SearchQuery:
    """A validated search. ``start_from``/``start_before`` bound the start time (UTC,
    half-open); ``city`` and ``point`` are exclusive."""

    term: str = ""
    city: str = ""
    point: GeoPoint | None = None
    radius_km: float = DEFAULT_RADIUS_KM
    type: str = ""
    start_from: dt.datetime | None = None
    start_before: dt.datetime | None = None
    include_past: bool = False
    sort: Sort = Sort.DATE

    def fingerprint(self) -> str:
        """What a page token is bound to: every part of the query except the page size."""
        point = (self.point.latitude, self.point.longitude) if self.point else None
        return query_fingerprint(
            "search", self.term, self.city, point, self.radius_km, self.type,
            self.start_from, self.start_before, self.include_past, self.sort.value,
        )  # fmt: skip


def _invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, reason=Reason.INVALID_ARGUMENT, metadata={"field": field})


# --- Validation ------------------------------------------------------------------------------


def parse_search(
    *,
    term: str,
    location: str,
    radius_km: float,
    type: str,
    date: str,
    include_past: bool,
    sort: Sort | None,
) -> SearchQuery:
    """The search a request describes, or INVALID_ARGUMENT naming the first bad field."""
    term = term.strip()
    if len(term) > MAX_TERM_CHARS:
        raise _invalid("term", f"term must be at most {MAX_TERM_CHARS} characters")
    radius = parse_radius(radius_km)
    city, point = parse_location(location)
    event_type = parse_type(type)
    start_from, start_before = parse_date(date)
    if sort is None:
        sort = Sort.RELEVANCE if term else Sort.DATE
    if sort is Sort.RELEVANCE and not term:
        sort = Sort.DATE  # without a term every score is equal
    if sort is Sort.DISTANCE and point is None and not city:
        raise _invalid("sort", "sorting by distance needs a location")
    return SearchQuery(
        term=term,
        city=city,
        point=point,
        radius_km=radius,
        type=event_type,
        start_from=start_from,
        start_before=start_before,
        include_past=include_past,
        sort=sort,
    )


def parse_radius(radius_km: float) -> float:
    if radius_km == 0:
        return DEFAULT_RADIUS_KM
    if not math.isfinite(radius_km) or not 0 < radius_km <= MAX_RADIUS_KM:
        raise _invalid("radius_km", f"radius_km must be more than 0 and at most {MAX_RADIUS_KM:g}")
    return float(radius_km)


def parse_location(raw: str) -> tuple[str, GeoPoint | None]:
    """("", point) for "lat,lng", (city, None) for a city name, ("", None) for nothing."""
    raw = raw.strip()
    if not raw:
        return "", None
    if len(raw) > MAX_LOCATION_CHARS:
        raise _invalid("location", f"location must be at most {MAX_LOCATION_CHARS} characters")
    match = _COORDINATES.match(raw)
    if match:
        latitude, longitude = float(match.group(1)), float(match.group(2))
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise _invalid(
                "location", "coordinates must be 'latitude,longitude' within ±90 and ±180"
            )
        return "", GeoPoint(latitude, longitude)
    if any(c.isdigit() for c in raw) and "," in raw:
        raise _invalid("location", "coordinates must look like '52.52,13.40'")
    # "New+York": a form-encoded space that the gateway's transcoder passes on as it is.
    key = city_key(raw.replace("+", " "))
    if not key:
        raise _invalid("location", "location must be a city name or 'latitude,longitude'")
    return key, None


def parse_type(raw: str) -> str:
    value = raw.strip().lower()
    if value and value not in EVENT_TYPES:
        raise _invalid("type", f"type must be one of {', '.join(EVENT_TYPES)}")
    return value


def parse_date(raw: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """ "YYYY-MM-DD" or "YYYY-MM-DD/YYYY-MM-DD" (inclusive, UTC) as a half-open range."""
    raw = raw.strip()
    if not raw:
        return None, None
    first, sep, last = raw.partition("/")
    start = _day(first)
    end = _day(last) if sep else start
    if end < start:
        raise _invalid("date", "the date range ends before it starts")
    return _midnight(start), _midnight(end + dt.timedelta(days=1))


def _day(text: str) -> dt.date:
    text = text.strip()
    if _DAY.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise _invalid("date", "date must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD'")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def search_page_size(requested: int) -> int:
    return page_size(requested, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)


# --- Page tokens -----------------------------------------------------------------------------
# A token holds the query's fingerprint and where the next page starts: the sort values of the
# last result shown (start time in epoch milliseconds or distance, then the event id), or for
# relevance the offset of the next result.


def _key_shape(sort: Sort) -> tuple[type, ...]:
    if sort is Sort.DATE:
        return (int, str)
    if sort is Sort.DISTANCE:
        return (float, int, str)
    return (int,)


def page_key(sort: Sort, values: Sequence[Any], *, next_offset: int) -> list[Any] | None:
    """Where the page after this one starts, from its last hit's sort values."""
    if sort is Sort.RELEVANCE:
        return [next_offset] if next_offset < TOTAL_HITS_LIMIT else None
    return [
        float(v) if kind is float else v for kind, v in zip(_key_shape(sort), values, strict=False)
    ]


def encode_token(query: SearchQuery, key: Sequence[Any]) -> str:
    return encode_page_token(query.fingerprint(), key)


def decode_token(query: SearchQuery, token: str) -> list[Any] | None:
    """The resume key of a token made by this same query, or INVALID_PAGE_TOKEN."""
    key = decode_page_token(token, query.fingerprint())
    if key is None:
        return None
    shape = _key_shape(query.sort)
    valid = len(key) == len(shape) and all(
        _fits(kind, value) for kind, value in zip(shape, key, strict=True)
    )
    if valid and query.sort is Sort.RELEVANCE:
        valid = 0 < key[0] < TOTAL_HITS_LIMIT
    if not valid:
        raise InvalidArgument(
            "page_token is malformed or belongs to a different query",
            reason=Reason.INVALID_PAGE_TOKEN,
            metadata={"field": "page_token"},
        )
    return key


def _fits(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and abs(value) <= 2**53
    return isinstance(value, str) and len(value) <= 64


# --- The engine query ------------------------------------------------------------------------


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
            raise _invalid("sort", "sorting by distance needs a location")
        distance = {"location": origin.as_engine(), "order": "asc", "unit": "km"}
        return [{"_geo_distance": distance}, *tail]
    return tail


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def city_lookup_body(city: str) -> dict[str, Any]:
    """Where a city is: the location of any one of its venues."""
    return {"size": 1, "_source": ["location"], "query": {"term": {"city_key": city}}}


def location_of(hit_source: Mapping[str, Any]) -> GeoPoint | None:
    location = hit_source.get("location")
    if isinstance(location, Mapping):
        lat, lon = location.get("lat"), location.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            return GeoPoint(float(lat), float(lon))
    return None


# --- Results ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Hit:
    """One result as a list shows it."""

    event_id: str
    name: str
    type: str
    start_time: dt.datetime | None
    performer_id: str
    performer_name: str
    venue_id: str
    venue_name: str
    city: str
    country_code: str
    location: GeoPoint | None
    currency: str
    available_tickets: int
    min_available_price_minor: int | None
    sold_out: bool
    distance_km: float | None
    highlights: dict[str, list[str]]


@dataclasses.dataclass(frozen=True, slots=True)
class SearchPage:
    hits: list[Hit]
    total: int
    type_facets: list[tuple[str, int]]
    city_facets: list[tuple[str, int]]
    next_key: list[Any] | None


def read_page(
    response: Mapping[str, Any],
    query: SearchQuery,
    *,
    limit: int,
    origin: GeoPoint | None,
    after: Sequence[Any] | None = None,
) -> SearchPage:
    """Results, facets and the resume key from an engine answer to ``search_body`` (asked for
    ``limit + 1`` hits, resuming at ``after``)."""
    raw_hits = list(response.get("hits", {}).get("hits", []))
    more = len(raw_hits) > limit
    raw_hits = raw_hits[:limit]
    hits = [_hit(h, origin or query.point) for h in raw_hits]
    offset = int(after[0]) if after and query.sort is Sort.RELEVANCE else 0
    next_key = None
    if more and raw_hits:
        values = raw_hits[-1].get("sort", [])
        next_key = page_key(query.sort, values, next_offset=offset + len(raw_hits))
    total = response.get("hits", {}).get("total", {})
    aggregations = response.get("aggregations", {})
    return SearchPage(
        hits=hits,
        total=int(total.get("value", 0)) if isinstance(total, Mapping) else int(total or 0),
        type_facets=_buckets(aggregations.get("type_facets")),
        city_facets=_buckets(aggregations.get("city_facets")),
        next_key=next_key,
    )


def _buckets(aggregation: Any) -> list[tuple[str, int]]:
    if not isinstance(aggregation, Mapping):
        return []
    return [(str(b["key"]), int(b["doc_count"])) for b in aggregation.get("buckets", [])]


def _hit(raw: Mapping[str, Any], origin: GeoPoint | None) -> Hit:
    source = raw.get("_source", {})
    location = location_of(source)
    price = source.get("min_available_price_minor")
    available = int(source.get("available_tickets") or 0)
    return Hit(
        event_id=str(source.get("event_id") or raw.get("_id", "")),
        name=str(source.get("name", "")),
        type=str(source.get("type", "")),
        start_time=parse_time(source.get("start_time")),
        performer_id=str(source.get("performer_id", "")),
        performer_name=str(source.get("performer_name", "")),
        venue_id=str(source.get("venue_id", "")),
        venue_name=str(source.get("venue_name", "")),
        city=str(source.get("city", "")),
        country_code=str(source.get("country_code", "")),
        location=location,
        currency=str(source.get("currency", "")),
        available_tickets=available,
        min_available_price_minor=int(price) if isinstance(price, int | float) else None,
        sold_out=bool(source.get("sold_out", available == 0)),
        distance_km=(
            round(distance_km(origin, location), 3) if origin and location is not None else None
        ),
        highlights={
            field: [str(f) for f in fragments]
            for field, fragments in (raw.get("highlight") or {}).items()
            if field in _HIGHLIGHTED and fragments
        },
    )


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance (haversine)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


# --- Search-as-you-type ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    kind: str  # "event", "performer" or "venue"
    event_id: str = ""


def parse_prefix(prefix: str) -> str:
    prefix = " ".join(prefix.split())
    if not prefix:
        raise _invalid("prefix", "prefix must not be empty")
    if len(prefix) > MAX_PREFIX_CHARS:
        raise _invalid("prefix", f"prefix must be at most {MAX_PREFIX_CHARS} characters")
    if not _WORDS.search(fold(prefix)):
        raise _invalid("prefix", "prefix must contain a letter or a digit")
    return prefix


def suggestion_count(requested: int) -> int:
    return page_size(requested, default=DEFAULT_SUGGESTIONS, maximum=MAX_SUGGESTIONS)


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


def suggestions(prefix: str, sources: Iterable[Mapping[str, Any]], limit: int) -> list[Suggestion]:
    """Distinct completions in hit order: for each event its performer, its venue and the
    event itself, whichever has a word starting with every typed word."""
    typed = _WORDS.findall(fold(prefix))
    found: list[Suggestion] = []
    seen: set[tuple[str, str]] = set()
    for source in sources:
        for kind, field in (
            ("performer", "performer_name"),
            ("venue", "venue_name"),
            ("event", "name"),
        ):
            text = str(source.get(field) or "")
            key = (kind, fold(text))
            if not text or key in seen or not _completes(typed, text):
                continue
            seen.add(key)
            event_id = str(source.get("event_id", "")) if kind == "event" else ""
            found.append(Suggestion(text=text, kind=kind, event_id=event_id))
            if len(found) >= limit:
                return found
    return found


def _completes(typed: Sequence[str], text: str) -> bool:
    words = _WORDS.findall(fold(text))
    return all(any(word.startswith(t) for word in words) for t in typed)
