"""CDC rules, free of Postgres, the search engine and gRPC.

What a committed change means for the index, and how changes are coalesced:

* the document of an event is a function of the database: the event, its venue, its performer
  and the availability of its tickets. So a change never carries a document; it only says
  *which* documents must be read again. Reading them from Postgres at write time makes
  unchanged TOAST values, partial rows and replays all harmless;
* an events row names its event; a tickets row names its ticket's event (``event_id``); a
  venues or performers row names all events at that venue or by that performer;
* a deleted ticket carries only its key, so its event is unknown: every event's availability
  is read again (rare: deleting tickets happens with their event);
* a TRUNCATE rebuilds the whole index;
* many transactions fold into one batch (a sale changes thousands of tickets of the same few
  events per second); a batch is written as one bulk request, versioned with the WAL position
  where its last transaction ends, and confirmed to the slot only after the write succeeded.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
from collections import deque
from collections.abc import Iterable

from cdc_worker.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    Relation,
    Truncate,
    Tuple,
    Update,
)

SCHEMA = "public"
EVENTS, VENUES, PERFORMERS, TICKETS = "events", "venues", "performers", "tickets"
TABLES = frozenset({EVENTS, VENUES, PERFORMERS, TICKETS})


@dataclasses.dataclass
class Batch:
    """Committed changes not yet written to the index: which documents to read again."""

    events: set[str] = dataclasses.field(default_factory=set)
    venues: set[str] = dataclasses.field(default_factory=set)
    performers: set[str] = dataclasses.field(default_factory=set)
    # A ticket was deleted (its event is unknown): read every document again.
    refresh_all: bool = False
    # A table was truncated: rebuild the index from scratch.
    rebuild: bool = False
    xids: list[int] = dataclasses.field(default_factory=list)
    # Where the last committed transaction of the batch ends: the documents' version and the
    # position confirmed to the slot once they are written.
    end_lsn: int = 0
    commit_times: list[dt.datetime] = dataclasses.field(default_factory=list)
    changes: int = 0
    ticket_changes: int = 0
    # When the first transaction of the batch was committed (the caller's monotonic clock).
    opened_at: float | None = None

    @property
    def transactions(self) -> int:
        return len(self.commit_times)

    def is_empty(self) -> bool:
        return not self.commit_times

    def touches_documents(self) -> bool:
        return bool(self.events or self.venues or self.performers or self.refresh_all)

    def absorb(self, txn: Transaction, commit: Commit, now: float) -> None:
        self.events |= txn.events
        self.venues |= txn.venues
        self.performers |= txn.performers
        self.refresh_all |= txn.refresh_all
        self.rebuild |= txn.rebuild
        self.xids.append(txn.xid)
        self.end_lsn = max(self.end_lsn, commit.end_lsn)
        self.commit_times.append(commit.commit_time)
        self.changes += txn.changes
        self.ticket_changes += txn.ticket_changes
        if self.opened_at is None:
            self.opened_at = now


@dataclasses.dataclass
class Transaction:
    """The changes of the transaction being received."""

    xid: int
    events: set[str] = dataclasses.field(default_factory=set)
    venues: set[str] = dataclasses.field(default_factory=set)
    performers: set[str] = dataclasses.field(default_factory=set)
    refresh_all: bool = False
    rebuild: bool = False
    changes: int = 0
    ticket_changes: int = 0


class ProtocolError(RuntimeError):
    """The stream broke the protocol's order (a change outside a transaction, a change of an
    unknown relation); the session must restart from the confirmed position."""


class Coalescer:
    """Folds decoded pgoutput messages into a ``Batch`` of committed work."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._txn: Transaction | None = None
        self._batch = Batch()

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    @property
    def transaction_changes(self) -> int:
        return self._txn.changes if self._txn else 0

    @property
    def transaction_xid(self) -> int | None:
        return self._txn.xid if self._txn else None

    @property
    def batch(self) -> Batch:
        return self._batch

    def take(self) -> Batch:
        """The committed work so far; a new batch starts."""
        batch, self._batch = self._batch, Batch()
        return batch

    def feed(self, message: Message, now: float = 0.0) -> None:
        if isinstance(message, Relation):
            self.relations[message.relid] = message
        elif isinstance(message, Begin):
            self._txn = Transaction(xid=message.xid)
        elif isinstance(message, Commit):
            if self._txn is None:
                raise ProtocolError("commit without begin")
            self._batch.absorb(self._txn, message, now)
            self._txn = None
        elif isinstance(message, Insert | Update | Delete | Truncate):
            if self._txn is None:
                raise ProtocolError("change outside a transaction")
            self._change(self._txn, message)

    def _relation(self, relid: int) -> Relation:
        relation = self.relations.get(relid)
        if relation is None:
            raise ProtocolError(f"change of relation {relid} before its description")
        return relation

    def _change(self, txn: Transaction, message: Insert | Update | Delete | Truncate) -> None:
        txn.changes += 1
        if isinstance(message, Truncate):
            names = {self._relation(r).name for r in message.relids}
            if names & {EVENTS, VENUES, PERFORMERS}:
                txn.rebuild = True
            elif TICKETS in names:
                txn.refresh_all = True
            return
        relation = self._relation(message.relid)
        if relation.namespace != SCHEMA or relation.name not in TABLES:
            return
        if relation.name == TICKETS:
            txn.ticket_changes += 1
            if isinstance(message, Delete):
                txn.refresh_all = True
                return
            event_id = _text(relation, message.new, "event_id")
            if event_id is None:
                txn.refresh_all = True
            else:
                txn.events.add(event_id)
            return
        rows = [message.old] if isinstance(message, Delete) else [message.new]
        if isinstance(message, Update) and message.old is not None:
            rows.append(message.old)  # the key changed: the old id's document goes too
        target = {EVENTS: txn.events, VENUES: txn.venues, PERFORMERS: txn.performers}
        for row in rows:
            row_id = _text(relation, row, "id")
            if row_id is None:
                txn.rebuild = True  # a row without its key: nothing else is safe
                return
            target[relation.name].add(row_id)


def _text(relation: Relation, row: Tuple, column: str) -> str | None:
    """A column's text value, or None when it was not sent (NULL or unchanged TOAST)."""
    try:
        value = row[relation.index_of(column)]
    except (KeyError, IndexError):
        return None
    if value is None or value is UNCHANGED:
        return None
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


# --- Visibility ------------------------------------------------------------------------------
# A commit reaches the WAL (and so the stream) a moment before it becomes visible to other
# sessions. Documents are read in a snapshot that must already see every transaction of the
# batch, or a read could miss the very change that triggered it.


def parse_snapshot(text: str) -> tuple[int, int, frozenset[int]]:
    """(xmin, xmax, in-progress xids) of a ``pg_current_snapshot()`` text ("10:20:12,15")."""
    xmin, xmax, xip = text.strip().split(":")
    return int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x)


def widen_xid(xid: int, reference: int) -> int:
    """The 64-bit transaction id of a 32-bit one, given a recent 64-bit id (the snapshot's
    xmax): the newest full id at or below the reference with those low 32 bits."""
    full = (reference & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
    if full > reference:
        full -= 1 << 32
    return full


def visible_in(snapshot: str, xids: Iterable[int]) -> bool:
    """True when every (committed, 32-bit) xid is visible in the snapshot."""
    xmin, xmax, in_progress = parse_snapshot(snapshot)
    for xid in xids:
        full = widen_xid(xid, xmax)
        if full >= xmax or (full >= xmin and full in in_progress):
            return False
    return True


# --- Operations ------------------------------------------------------------------------------


class Backoff:
    """Delays between retries: doubling from ``first`` up to ``cap``; reset on success."""

    def __init__(self, first: float = 0.2, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        delay: float = min(self.cap, self.first * 2.0 ** min(self.attempts, 30))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


class LagWindow:
    """The last ``size`` commit-to-visible delays, for the status log."""

    def __init__(self, size: int = 2000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(max(0.0, seconds))

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, p: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank]

    def clear(self) -> None:
        self._values.clear()


class HoldTimers:
    """When each event's first live hold lapses. A lapsed hold makes a ticket available again
    without any write (the schema's expiry is implicit), so nothing would reach the stream:
    the worker reads such an event again when its timer is due."""

    def __init__(self, grace: dt.timedelta = dt.timedelta(milliseconds=20)) -> None:
        # Fire a little after the expiry, so the database's clock has passed it too.
        self._grace = grace
        self._due: dict[str, dt.datetime] = {}
        self._heap: list[tuple[dt.datetime, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def schedule(self, event_id: str, expiry: dt.datetime | None) -> None:
        if expiry is None:
            self._due.pop(event_id, None)
            return
        if self._due.get(event_id) == expiry:
            return
        self._due[event_id] = expiry
        heapq.heappush(self._heap, (expiry, event_id))

    def pop_due(self, now: dt.datetime) -> set[str]:
        due: set[str] = set()
        while self._heap and self._heap[0][0] + self._grace <= now:
            expiry, event_id = heapq.heappop(self._heap)
            if self._due.get(event_id) == expiry:
                del self._due[event_id]
                due.add(event_id)
        return due

    def next_due(self) -> dt.datetime | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] + self._grace if self._heap else None

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()
