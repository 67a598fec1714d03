"""What the replicator needs from the outside world, and how those parts fail.

Four ports: the active worker's lock (a Postgres session advisory lock), the replication
stream (psycopg2), the catalog (psycopg 3 reads of the documents
and of the slot) and the index (the search engine). The adapters in ``cdc_worker.adapters``
implement them; the unit tests use in-memory fakes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol

from search_svc.documents import EventDocument


class SourceUnavailable(Exception):
    """Postgres cannot be reached, or the replication connection broke: reconnect later and
    resume from the confirmed position."""


class SlotBusy(SourceUnavailable):
    """Another worker streams from the slot: stand by and try again later."""


class LockLost(SourceUnavailable):
    """The connection holding the active worker's lock broke: the lock may already be
    another worker's, so stop streaming at once."""


class SlotLost(Exception):
    """The slot was invalidated (the WAL it needed is gone): changes were lost."""


class SinkUnavailable(Exception):
    """The search engine cannot take writes now: wait and retry, never skip."""


class AliasMissing(Exception):
    """The index behind the alias is gone (the engine restarted empty): rebuild it."""


@dataclasses.dataclass(frozen=True, slots=True)
class SlotState:
    confirmed_lsn: int
    # Set when Postgres invalidated the slot ("wal_removed", "rows_removed", ...).
    invalidation: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class SlotStatus:
    """For operators: how far behind the slot is and how much WAL it keeps on disk."""

    server_lsn: int
    confirmed_lsn: int
    retained_bytes: int
    wal_status: str

    @property
    def lag_bytes(self) -> int:
        return max(0, self.server_lsn - self.confirmed_lsn)


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """A document as read from Postgres, and when its event's first live hold lapses."""

    document: EventDocument
    next_hold_expiry: dt.datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class WriteReport:
    written: int = 0
    # Already at this version or newer (a replay): nothing to do.
    stale: int = 0
    # Refused by the engine for a reason that retrying cannot fix (a mapping error).
    rejected: tuple[tuple[str, str], ...] = ()


class ReplicationStream(Protocol):
    def start(self, start_lsn: int) -> None: ...

    def read(self) -> bytes | None:
        """The next message's payload if one has arrived, else None (never blocks)."""

    def wait(self, timeout: float) -> None:
        """Until a message may have arrived, or ``timeout`` seconds."""

    def confirm(self, lsn: int) -> None:
        """Tell the slot everything up to ``lsn`` is durably applied."""

    def keepalive(self, reply: bool = False) -> None:
        """Show the server the worker is alive; ``reply`` asks for its WAL position."""

    @property
    def server_lsn(self) -> int:
        """The server's WAL position as of the last message or keepalive."""

    def close(self) -> None: ...


class Catalog(Protocol):
    def slot(self) -> SlotState | None: ...

    def create_slot(self) -> int:
        """Create the slot; its start position."""

    def drop_slot(self) -> None: ...

    def slot_status(self) -> SlotStatus | None: ...

    def documents(
        self,
        events: set[str],
        venues: set[str],
        performers: set[str],
        xids: Sequence[int],
    ) -> list[Loaded]:
        """The current documents of these events and of every event at these venues or by
        these performers, read in one snapshot that sees the transactions ``xids``."""

    def all_documents(self, chunk: int, xids: Sequence[int] = ()) -> Iterator[list[Loaded]]:
        """Every document, ``chunk`` at a time, from one snapshot that sees ``xids``."""

    def events_with_holds(self) -> set[str]:
        """Events with a ticket in the 'held' state, live or lapsed."""

    def close(self) -> None: ...


class Index(Protocol):
    def alias_exists(self) -> bool: ...

    def document_count(self) -> int: ...

    def write(
        self, upserts: Sequence[EventDocument], deletes: Sequence[str], version: int
    ) -> WriteReport: ...

    def new_index(self) -> str:
        """Create an empty index for a rebuild (and drop unpublished leftovers)."""

    def load(self, index: str, documents: Sequence[EventDocument], version: int) -> None: ...

    def publish(self, index: str) -> None:
        """Point the alias at ``index`` in one step and drop the indices it left."""


class ActiveLock(Protocol):
    """The one-active-worker lock: held for as long as its own connection lives."""

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this worker now holds it."""

    def check(self) -> None:
        """Raise ``LockLost`` unless the lock (its connection) is still held."""

    def close(self) -> None:
        """Release the lock (closing its connection)."""
