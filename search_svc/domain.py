"""Search's domain, free of gRPC and of the search engine's client: what a search is
(``SearchQuery``), how its pages are cut and resumed (page tokens), and how far a place is.

The request becomes a ``SearchQuery`` in ``search_svc.request``; the query becomes the engine's
request in ``search_svc.query``; the engine's answer becomes results in ``search_svc.results``.

Paging by date or distance uses ``search_after`` on the sort values plus the event id, so a
page boundary holds while documents change; paging by relevance uses the offset (at most
``TOTAL_HITS_LIMIT`` deep): scores are sums of floats that an engine may round differently in
its answer than in its comparisons (the embedded one does), and resuming after a rounded score
repeats or skips results.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import re
from collections.abc import Sequence
from typing import Any

from search_svc.documents import fold
from ticketing_common.errors import InvalidArgument, Reason
from ticketing_common.pagination import (
    decode_page_token,
    encode_page_token,
    invalid_page_token,
    query_fingerprint,
)

DEFAULT_RADIUS_KM = 50.0
# Exact up to this many; beyond it the total says "at least".
TOTAL_HITS_LIMIT = 10_000
EARTH_RADIUS_KM = 6371.0088

_WORDS = re.compile(r"\w+")


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


def invalid(field: str, message: str) -> InvalidArgument:
    """A bad request, naming the field (INVALID_ARGUMENT)."""
    return InvalidArgument(message, reason=Reason.INVALID_ARGUMENT, metadata={"field": field})


def words(text: str) -> list[str]:
    """The words of a text as matching compares them (case and accents folded)."""
    return _WORDS.findall(fold(text))


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
        raise invalid_page_token()
    return key


def _fits(kind: type, value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, int | float) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and abs(value) <= 2**53
    return isinstance(value, str) and len(value) <= 64


def distance_km(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance (haversine)."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))
