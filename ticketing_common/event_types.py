"""The event types, read from the contract: ``ticketing.catalog.v1.EventType`` is their one source.

Domain code speaks the short lower-case names (``"concert"``), which is also what Postgres stores
(``0002_catalog.sql`` checks the same list; ``tests/unit/test_event_types.py`` keeps them equal) and
what the search index holds. The names are derived from the generated enum, in its order, so a new
value in the proto is a new type everywhere at the next ``make gen``.
"""

from __future__ import annotations

from typing import cast

from ticketing.catalog.v1 import catalog_pb2

_PREFIX = "EVENT_TYPE_"

EVENT_TYPE_TO_PROTO: dict[str, catalog_pb2.EventType] = {
    value.name.removeprefix(_PREFIX).lower(): cast(catalog_pb2.EventType, value.number)
    for value in catalog_pb2.EventType.DESCRIPTOR.values
    if value.number != catalog_pb2.EVENT_TYPE_UNSPECIFIED
}
EVENT_TYPE_FROM_PROTO: dict[catalog_pb2.EventType, str] = {
    number: name for name, number in EVENT_TYPE_TO_PROTO.items()
}
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_TYPE_TO_PROTO)
