"""Decoder of the ``pgoutput`` logical replication protocol, version 1 (pure, no I/O).

Each replication message's payload is one of the messages below (PostgreSQL documentation,
"Logical Replication Message Formats"). Version 1 sends a transaction only once it has
committed, as Begin, its changes, Commit; Relation messages describe a table before its first
change in a session. Values come in the text format.

Column values are ``str`` (text format), ``None`` (SQL NULL) or ``UNCHANGED``: with the
default replica identity an UPDATE that leaves a TOASTed value (a large ``seat_map`` or
``description``) untouched does not send it. ``UNCHANGED`` means "not sent", never "empty":
whoever needs the value must keep the one it has or read the row again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import struct
from typing import Final

PG_EPOCH: Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class _Unchanged:
    """The value of an unchanged TOASTed column (pgoutput's 'u')."""

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __bool__(self) -> bool:
        raise TypeError("an unchanged TOAST value has no truth value: read the row instead")


UNCHANGED: Final = _Unchanged()
Value = str | bytes | None | _Unchanged
Tuple = tuple[Value, ...]


class DecodeError(ValueError):
    """A payload that is not a pgoutput message this decoder knows."""


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    is_key: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Relation:
    relid: int
    namespace: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]

    def index_of(self, column: str) -> int:
        for i, c in enumerate(self.columns):
            if c.name == column:
                return i
        raise KeyError(f"{self.namespace}.{self.name} has no column {column!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_time: dt.datetime
    xid: int


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Insert:
    relid: int
    new: Tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    relid: int
    new: Tuple
    # The old key ('K', when the key changed) or old row ('O', replica identity FULL).
    old: Tuple | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Delete:
    relid: int
    # The old key ('K': key columns set, the others None) or old row ('O').
    old: Tuple


@dataclasses.dataclass(frozen=True, slots=True)
class Truncate:
    relids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Other:
    """Origin, Type and logical decoding messages: nothing for this worker."""

    kind: str


Message = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Other

_I8 = struct.Struct("!b")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_I64 = struct.Struct("!q")
_U64 = struct.Struct("!Q")


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("message ends early")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def _unpack(self, fmt: struct.Struct) -> int:
        try:
            (value,) = fmt.unpack_from(self.data, self.pos)
        except struct.error as exc:
            raise DecodeError("message ends early") from exc
        self.pos += fmt.size
        return int(value)

    def i8(self) -> int:
        return self._unpack(_I8)

    def i16(self) -> int:
        return self._unpack(_I16)

    def i32(self) -> int:
        return self._unpack(_I32)

    def u32(self) -> int:
        return self._unpack(_U32)

    def i64(self) -> int:
        return self._unpack(_I64)

    def u64(self) -> int:
        return self._unpack(_U64)

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DecodeError("unterminated string")
        text = self.data[self.pos : end].decode()
        self.pos = end + 1
        return text

    def raw(self, length: int) -> bytes:
        if length < 0 or self.pos + length > len(self.data):
            raise DecodeError("value ends early")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def time(self) -> dt.datetime:
        return PG_EPOCH + dt.timedelta(microseconds=self.i64())

    def tuple(self) -> Tuple:
        values: list[Value] = []
        for _ in range(self.i16()):
            kind = self.byte()
            if kind == 0x6E:  # 'n'
                values.append(None)
            elif kind == 0x75:  # 'u'
                values.append(UNCHANGED)
            elif kind == 0x74:  # 't'
                values.append(self.raw(self.i32()).decode())
            elif kind == 0x62:  # 'b'
                values.append(self.raw(self.i32()))
            else:
                raise DecodeError(f"unknown tuple value kind {kind!r}")
        return tuple(values)


def decode(payload: bytes) -> Message:
    """One pgoutput message."""
    if not payload:
        raise DecodeError("empty message")
    r = _Reader(bytes(payload))
    kind = chr(r.byte())
    if kind == "B":
        final_lsn = r.u64()
        commit_time = r.time()
        return Begin(final_lsn=final_lsn, commit_time=commit_time, xid=r.u32())
    if kind == "C":
        r.i8()  # flags, unused
        commit_lsn = r.u64()
        end_lsn = r.u64()
        return Commit(commit_lsn=commit_lsn, end_lsn=end_lsn, commit_time=r.time())
    if kind == "R":
        relid = r.u32()
        namespace = r.string()
        name = r.string()
        identity = chr(r.byte())
        columns = []
        for _ in range(r.i16()):
            flags = r.i8()
            column = r.string()
            type_oid = r.u32()
            r.i32()  # type modifier
            columns.append(Column(column, type_oid, bool(flags & 1)))
        return Relation(relid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == "I":
        relid = r.u32()
        if chr(r.byte()) != "N":
            raise DecodeError("insert without a new tuple")
        return Insert(relid, r.tuple())
    if kind == "U":
        relid = r.u32()
        marker = chr(r.byte())
        old: Tuple | None = None
        if marker in ("K", "O"):
            old = r.tuple()
            marker = chr(r.byte())
        if marker != "N":
            raise DecodeError("update without a new tuple")
        return Update(relid, r.tuple(), old)
    if kind == "D":
        relid = r.u32()
        if chr(r.byte()) not in ("K", "O"):
            raise DecodeError("delete without an old key or row")
        return Delete(relid, r.tuple())
    if kind == "T":
        count = r.i32()
        options = r.i8()
        relids = tuple(r.u32() for _ in range(count))
        return Truncate(relids, cascade=bool(options & 1), restart_identity=bool(options & 2))
    if kind in ("O", "Y", "M"):
        return Other(kind)
    raise DecodeError(f"unknown pgoutput message {kind!r}")


def format_lsn(lsn: int) -> str:
    """An LSN as PostgreSQL writes it: "16/B374D848"."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, sep, low = text.strip().partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)
