"""What the engine answered, read into the domain's results: the hits of a page with their
facets and where the next page starts, a city's location, the completions of a prefix."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from search_svc.documents import fold, parse_time
from search_svc.domain import GeoPoint, SearchQuery, Sort, distance_km, page_key, words

_HIGHLIGHTED = ("name", "performer_name", "venue_name", "description")


def location_of(hit_source: Mapping[str, Any]) -> GeoPoint | None:
    location = hit_source.get("location")
    if isinstance(location, Mapping):
        lat, lon = location.get("lat"), location.get("lon")
        if isinstance(lat, int | float) and isinstance(lon, int | float):
            return GeoPoint(float(lat), float(lon))
    return None


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


# --- Search-as-you-type ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Suggestion:
    text: str
    kind: str  # "event", "performer" or "venue"
    event_id: str = ""


def suggestions(prefix: str, sources: Iterable[Mapping[str, Any]], limit: int) -> list[Suggestion]:
    """Distinct completions in hit order: for each event its performer, its venue and the
    event itself, whichever has a word starting with every typed word."""
    typed = words(prefix)
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
    found = words(text)
    return all(any(word.startswith(t) for word in found) for t in typed)
