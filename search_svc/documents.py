"""The event document: what the search index holds per event, and the index that holds it.

One document per event, id = the event id, written only by the CDC worker (``cdc_worker``) and
read only by the search service. It is denormalized: the event with its performer's and venue's
names, the venue's place, and the event's availability (available tickets, the lowest available
price, sold out), so one index answers a search without a join.

Searches and writes go through the alias ``ALIAS``; the concrete index behind it is
``events-v1-<milliseconds>``, so a rebuild fills a new index and swaps the alias in one step
while searches keep reading the old one. A change of the mapping below that is not additive
needs a new ``SCHEMA_VERSION`` (a rebuild on the next worker start picks it up).

Production settings (``SETTINGS``, written here once; the CDC worker creates every index with
them, through either client, and README.md "Search and the CDC worker" documents them per
engine). The same body is valid for Elasticsearch 9 and OpenSearch 2/3; they differ only in
what is said below:

* ``number_of_shards``: 1 (both engines' default): right up to tens of millions of events, the
  documents are small; a search touches one shard.
* ``auto_expand_replicas: "0-1"``: one replica as soon as the cluster has a second data node,
  none on a single node (the embedded engine, a one-node development cluster), so a node loss
  keeps the index searchable with no setting to change per deployment. Both engines have it
  (OpenSearch kept it from Elasticsearch 7.10). Where the platform wants another count, e.g.
  Amazon OpenSearch Service's Multi-AZ with Standby (a full copy in each of three zones: two
  replicas), set ``number_of_replicas`` on the index after it is created.
* ``refresh_interval``: 500 ms keeps "commit to visible" under the one-second promise of the
  search view (the engines' default of 1 s alone would use the whole budget; set explicitly it
  also keeps idle shards from skipping refreshes, in both engines). OpenSearch refuses a value
  below its cluster setting ``cluster.minimum.index.refresh_interval`` (a floor an operator
  may raise); Elasticsearch has no such floor. The embedded engine makes every write visible at
  once and ignores it.
* Analyzers: ``folded`` (standard tokenizer, lowercase, asciifolding) and ``prefixes`` (the
  same plus an ``edge_ngram`` filter, 1..20) use only built-in components, the same in both
  engines; no plugin (ICU, phonetic) is needed. ``index.max_ngram_diff`` limits ``ngram``, not
  ``edge_ngram``, in both.
* The CDC worker writes with external versions (``version_type=external_gte``, the WAL
  position), so replays after a crash and a second worker racing the first are harmless.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from typing import Any

ALIAS = "events"
SCHEMA_VERSION = 1
INDEX_PREFIX = f"{ALIAS}-v{SCHEMA_VERSION}-"

# Folded: lower case without accents, so "zurich" finds "Zürich". Prefixes: every word's first
# 1..20 letters, for search-as-you-type (searched with the folded analyzer, not the prefix one).
_ANALYSIS: dict[str, Any] = {
    "filter": {"word_prefixes": {"type": "edge_ngram", "min_gram": 1, "max_gram": 20}},
    "analyzer": {
        "folded": {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding"],
        },
        "prefixes": {
            "type": "custom",
            "tokenizer": "standard",
            "filter": ["lowercase", "asciifolding", "word_prefixes"],
        },
    },
}


def _name_field() -> dict[str, Any]:
    """A name: full-text searched, highlighted, completed as you type, and copied into
    ``names``, the one field that fuzzy matching runs on."""
    return {
        "type": "text",
        "analyzer": "folded",
        "copy_to": ["names"],
        "fields": {"prefix": {"type": "text", "analyzer": "prefixes", "search_analyzer": "folded"}},
    }


SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "auto_expand_replicas": "0-1",
    "refresh_interval": "500ms",
    "analysis": _ANALYSIS,
}

MAPPINGS: dict[str, Any] = {
    # A document with a field not listed here is refused rather than silently mapped.
    "dynamic": "strict",
    "properties": {
        "event_id": {"type": "keyword"},
        "name": _name_field(),
        "description": {"type": "text", "analyzer": "folded"},
        "names": {"type": "text", "analyzer": "folded"},
        "type": {"type": "keyword"},
        "start_time": {"type": "date"},
        "end_time": {"type": "date"},
        "on_sale_time": {"type": "date"},
        "currency": {"type": "keyword"},
        "queue_enabled": {"type": "boolean"},
        "performer_id": {"type": "keyword"},
        "performer_name": _name_field(),
        "performer_genre": {"type": "keyword"},
        "venue_id": {"type": "keyword"},
        "venue_name": _name_field(),
        "city": {"type": "keyword"},
        "city_key": {"type": "keyword"},
        "region": {"type": "keyword"},
        "country_code": {"type": "keyword"},
        "location": {"type": "geo_point"},
        "time_zone": {"type": "keyword", "index": False},
        "available_tickets": {"type": "integer"},
        "min_available_price_minor": {"type": "long"},
        "sold_out": {"type": "boolean"},
    },
}

# The fields a result list shows (the rest stays in the index for matching only).
SUMMARY_FIELDS = (
    "event_id",
    "name",
    "type",
    "start_time",
    "currency",
    "performer_id",
    "performer_name",
    "venue_id",
    "venue_name",
    "city",
    "country_code",
    "location",
    "available_tickets",
    "min_available_price_minor",
    "sold_out",
)

_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """Text as the ``folded`` analyzer compares it: lower case, accents dropped, spaces
    collapsed ("  Zürich " -> "zurich")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SPACES.sub(" ", stripped).strip()


def city_key(city: str) -> str:
    """How a city is compared (the ``city_key`` field): "zurich" finds "Zürich"."""
    return fold(city)


@dataclasses.dataclass(frozen=True, slots=True)
class EventDocument:
    """One event as the index holds it."""

    event_id: str
    name: str
    description: str
    type: str
    start_time: dt.datetime
    end_time: dt.datetime
    on_sale_time: dt.datetime
    currency: str
    queue_enabled: bool
    performer_id: str
    performer_name: str
    performer_genre: str
    venue_id: str
    venue_name: str
    city: str
    region: str
    country_code: str
    latitude: float
    longitude: float
    time_zone: str
    available_tickets: int
    min_available_price_minor: int | None

    @property
    def sold_out(self) -> bool:
        return self.available_tickets == 0

    def to_source(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "name": self.name,
            "description": self.description,
            "type": self.type,
            "start_time": _iso(self.start_time),
            "end_time": _iso(self.end_time),
            "on_sale_time": _iso(self.on_sale_time),
            "currency": self.currency,
            "queue_enabled": self.queue_enabled,
            "performer_id": self.performer_id,
            "performer_name": self.performer_name,
            "performer_genre": self.performer_genre,
            "venue_id": self.venue_id,
            "venue_name": self.venue_name,
            "city": self.city,
            "city_key": city_key(self.city),
            "region": self.region,
            "country_code": self.country_code,
            "location": {"lat": self.latitude, "lon": self.longitude},
            "time_zone": self.time_zone,
            "available_tickets": self.available_tickets,
            "min_available_price_minor": self.min_available_price_minor,
            "sold_out": self.sold_out,
        }


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> dt.datetime | None:
    """A stored date (ISO 8601 text or epoch milliseconds) as an aware datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None
