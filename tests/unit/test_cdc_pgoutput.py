"""The pgoutput decoder against hand-built protocol messages (the encoders below follow the
PostgreSQL documentation, "Logical Replication Message Formats"; the replicator tests reuse
them to feed a fake stream)."""

import datetime as dt
import struct

import pytest

from cdc_worker.pgoutput import (
    PG_EPOCH,
    UNCHANGED,
    Begin,
    Column,
    Commit,
    DecodeError,
    Delete,
    Insert,
    Other,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
)

T0 = dt.datetime(2026, 12, 1, 20, 0, tzinfo=dt.UTC)

# --- encoders --------------------------------------------------------------------------------


def _micros(when: dt.datetime) -> int:
    return (when - PG_EPOCH) // dt.timedelta(microseconds=1)


def _string(text: str) -> bytes:
    return text.encode() + b"\0"


def _tuple(values) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        elif isinstance(value, bytes):
            out += b"b" + struct.pack("!i", len(value)) + value
        else:
            data = str(value).encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


def begin(xid: int, final_lsn: int, when: dt.datetime = T0) -> bytes:
    return b"B" + struct.pack("!QqI", final_lsn, _micros(when), xid)


def commit(end_lsn: int, when: dt.datetime = T0) -> bytes:
    return b"C" + struct.pack("!bQQq", 0, end_lsn - 8, end_lsn, _micros(when))


def relation(relid: int, name: str, columns: list[str], keys=("id",), namespace="public") -> bytes:
    out = b"R" + struct.pack("!I", relid) + _string(namespace) + _string(name) + b"d"
    out += struct.pack("!h", len(columns))
    for column in columns:
        out += struct.pack("!b", 1 if column in keys else 0) + _string(column)
        out += struct.pack("!Ii", 25, -1)
    return out


def insert(relid: int, values) -> bytes:
    return b"I" + struct.pack("!I", relid) + b"N" + _tuple(values)


def update(relid: int, values, old=None) -> bytes:
    out = b"U" + struct.pack("!I", relid)
    if old is not None:
        out += b"K" + _tuple(old)
    return out + b"N" + _tuple(values)


def delete(relid: int, key_values) -> bytes:
    return b"D" + struct.pack("!I", relid) + b"K" + _tuple(key_values)


def truncate(relids, cascade=False) -> bytes:
    return (
        b"T"
        + struct.pack("!ib", len(relids), 1 if cascade else 0)
        + b"".join(struct.pack("!I", r) for r in relids)
    )


# The publication's tables as the tests describe them (a subset of the real columns, in order).
EVENTS_REL, VENUES_REL, PERFORMERS_REL, TICKETS_REL = 16401, 16402, 16403, 16404
EVENT_COLUMNS = ["id", "venue_id", "performer_id", "name", "description"]
TICKET_COLUMNS = ["id", "event_id", "status", "price_minor"]


def relations() -> list[bytes]:
    return [
        relation(EVENTS_REL, "events", EVENT_COLUMNS),
        relation(VENUES_REL, "venues", ["id", "name", "city", "seat_map"]),
        relation(PERFORMERS_REL, "performers", ["id", "name", "description"]),
        relation(TICKETS_REL, "tickets", TICKET_COLUMNS),
    ]


# --- tests ---------------------------------------------------------------------------------------


def test_begin_and_commit_carry_positions_times_and_xid():
    assert decode(begin(731, 0x1_0000_0010, T0)) == Begin(0x1_0000_0010, T0, 731)
    assert decode(commit(0x20, T0)) == Commit(0x18, 0x20, T0)


def test_relation_describes_columns_and_keys():
    rel = decode(relation(16401, "events", ["id", "name"]))
    assert rel == Relation(
        16401, "public", "events", "d", (Column("id", 25, True), Column("name", 25, False))
    )
    assert rel.index_of("name") == 1
    with pytest.raises(KeyError):
        rel.index_of("missing")


def test_insert_update_delete_values_keep_null_text_binary_and_unchanged_apart():
    assert decode(insert(7, ["a", None, b"\x01\x02"])) == Insert(7, ("a", None, b"\x01\x02"))
    changed = decode(update(7, ["a", UNCHANGED, "é"]))
    assert changed == Update(7, ("a", UNCHANGED, "é"), None)
    assert decode(update(7, ["b"], old=["a"])) == Update(7, ("b",), ("a",))
    assert decode(delete(7, ["a", None])) == Delete(7, ("a", None))


def test_an_unchanged_toast_value_is_never_mistaken_for_an_empty_one():
    (_, description) = decode(update(7, ["x", UNCHANGED])).new
    assert description is UNCHANGED
    assert description != "" and description is not None
    with pytest.raises(TypeError):
        bool(description)


def test_truncate_lists_its_relations_and_options():
    assert decode(truncate([1, 2], cascade=True)) == Truncate((1, 2), True, False)


def test_origin_type_and_messages_are_recognized_and_ignored():
    assert decode(b"O" + struct.pack("!Q", 5) + _string("elsewhere")) == Other("O")
    assert decode(b"Y" + struct.pack("!I", 1) + _string("public") + _string("mood")) == Other("Y")


@pytest.mark.parametrize(
    "payload",
    [b"", b"Z", b"B\x00", insert(7, ["a"])[:-1], b"I" + struct.pack("!I", 7) + b"X", b"R\x00\x00"],
)
def test_malformed_messages_raise_decode_error(payload):
    with pytest.raises(DecodeError):
        decode(payload)


def test_lsn_text_round_trips():
    assert format_lsn(0x16_B374D848) == "16/B374D848"
    assert parse_lsn("16/B374D848") == 0x16_B374D848
    assert parse_lsn(format_lsn(0)) == 0
    with pytest.raises(ValueError):
        parse_lsn("nonsense")
