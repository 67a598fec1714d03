"""The event types have one source, the proto enum; the schema's CHECK must list the same names."""

import re

from ticketing.catalog.v1 import catalog_pb2

from deploy.migrate import MIGRATIONS_DIR
from ticketing_common.event_types import EVENT_TYPE_FROM_PROTO, EVENT_TYPE_TO_PROTO, EVENT_TYPES

# What the contract declares, in its order, without the zero value.
PROTO_NAMES = [
    value.name.removeprefix("EVENT_TYPE_").lower()
    for value in catalog_pb2.EventType.DESCRIPTOR.values
    if value.number != 0
]


def _sql_event_types() -> list[str]:
    text = (MIGRATIONS_DIR / "0002_catalog.sql").read_text()
    table = re.search(r"CREATE TABLE events \((.*?)\n\);", text, re.DOTALL)
    assert table, "0002_catalog.sql no longer creates the events table"
    check = re.search(r"\btype\s+text\s+NOT NULL\s+CHECK\s*\(\s*type IN \(([^)]*)\)", table[1])
    assert check, "the events.type CHECK is gone or changed shape"
    return re.findall(r"'([^']*)'", check[1])


def test_the_python_names_are_the_proto_enum_values_in_order() -> None:
    assert list(EVENT_TYPES) == PROTO_NAMES
    assert EVENT_TYPE_TO_PROTO["concert"] == catalog_pb2.EVENT_TYPE_CONCERT
    assert EVENT_TYPE_FROM_PROTO[catalog_pb2.EVENT_TYPE_CONFERENCE] == "conference"
    assert catalog_pb2.EVENT_TYPE_UNSPECIFIED not in EVENT_TYPE_FROM_PROTO


def test_the_schema_check_lists_the_proto_enum_values() -> None:
    assert sorted(_sql_event_types()) == sorted(PROTO_NAMES)
