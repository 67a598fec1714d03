"""What a search request asks for: its fields checked and read into the domain's values
(``SearchQuery``, a prefix, a page size), or INVALID_ARGUMENT naming the first bad field."""

from __future__ import annotations

import datetime as dt
import math
import re

from search_svc.documents import city_key
from search_svc.domain import (
    DEFAULT_RADIUS_KM,
    GeoPoint,
    SearchQuery,
    Sort,
    invalid,
    words,
)
from ticketing_common.event_types import EVENT_TYPES
from ticketing_common.pagination import page_size

MAX_TERM_CHARS = 256
MAX_LOCATION_CHARS = 200
MAX_RADIUS_KM = 20_000.0
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_PREFIX_CHARS = 100
DEFAULT_SUGGESTIONS = 8
MAX_SUGGESTIONS = 20

_COORDINATES = re.compile(r"^\s*([+-]?\d{1,3}(?:\.\d+)?)\s*,\s*([+-]?\d{1,3}(?:\.\d+)?)\s*$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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
        raise invalid("term", f"term must be at most {MAX_TERM_CHARS} characters")
    radius = parse_radius(radius_km)
    city, point = parse_location(location)
    event_type = parse_type(type)
    start_from, start_before = parse_date(date)
    if sort is None:
        sort = Sort.RELEVANCE if term else Sort.DATE
    if sort is Sort.RELEVANCE and not term:
        sort = Sort.DATE  # without a term every score is equal
    if sort is Sort.DISTANCE and point is None and not city:
        raise invalid("sort", "sorting by distance needs a location")
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
        raise invalid("radius_km", f"radius_km must be more than 0 and at most {MAX_RADIUS_KM:g}")
    return float(radius_km)


def parse_location(raw: str) -> tuple[str, GeoPoint | None]:
    """("", point) for "lat,lng", (city, None) for a city name, ("", None) for nothing."""
    raw = raw.strip()
    if not raw:
        return "", None
    if len(raw) > MAX_LOCATION_CHARS:
        raise invalid("location", f"location must be at most {MAX_LOCATION_CHARS} characters")
    match = _COORDINATES.match(raw)
    if match:
        latitude, longitude = float(match.group(1)), float(match.group(2))
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise invalid(
                "location", "coordinates must be 'latitude,longitude' within ±90 and ±180"
            )
        return "", GeoPoint(latitude, longitude)
    if any(c.isdigit() for c in raw) and "," in raw:
        raise invalid("location", "coordinates must look like '52.52,13.40'")
    # "New+York": a form-encoded space that the gateway's transcoder passes on as it is.
    key = city_key(raw.replace("+", " "))
    if not key:
        raise invalid("location", "location must be a city name or 'latitude,longitude'")
    return key, None


def parse_type(raw: str) -> str:
    value = raw.strip().lower()
    if value and value not in EVENT_TYPES:
        raise invalid("type", f"type must be one of {', '.join(EVENT_TYPES)}")
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
        raise invalid("date", "the date range ends before it starts")
    return _midnight(start), _midnight(end + dt.timedelta(days=1))


def _day(text: str) -> dt.date:
    text = text.strip()
    if _DAY.match(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise invalid("date", "date must be 'YYYY-MM-DD' or 'YYYY-MM-DD/YYYY-MM-DD'")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def search_page_size(requested: int) -> int:
    return page_size(requested, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)


def parse_prefix(prefix: str) -> str:
    prefix = " ".join(prefix.split())
    if not prefix:
        raise invalid("prefix", "prefix must not be empty")
    if len(prefix) > MAX_PREFIX_CHARS:
        raise invalid("prefix", f"prefix must be at most {MAX_PREFIX_CHARS} characters")
    if not words(prefix):
        raise invalid("prefix", "prefix must contain a letter or a digit")
    return prefix


def suggestion_count(requested: int) -> int:
    return page_size(requested, default=DEFAULT_SUGGESTIONS, maximum=MAX_SUGGESTIONS)
