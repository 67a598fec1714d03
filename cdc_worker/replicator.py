"""The replication loop: Postgres' logical replication stream into the search index.

A session:

1. **Slot.** Find the slot. Missing: create it; if the index already holds documents, say
   loudly that changes may have been missed (the slot was dropped) and rebuild. Invalidated by
   Postgres (the WAL it needed was removed): say so loudly, drop it, create it, rebuild.
2. **Index.** If the alias is missing (a new or restarted in-memory engine), backfill: read
   every document from Postgres into a new index, then point the alias at it.
3. **Stream** from the slot's confirmed position. Committed transactions fold into a batch (see
   ``cdc_worker.domain``); a batch is written when the stream has nothing more buffered, or
   when it is ``batch_max_seconds`` old or touches ``batch_max_events`` events while a sale
   keeps the stream busy. Writing a batch: read its documents from Postgres, write them with
   the batch's end LSN as external version, and only then confirm that LSN to the slot.

Tracing (when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, ``ticketing_common.tracing``): each
written batch is a ``cdc.batch`` trace, with a ``cdc.read_slot`` span (from the batch's first
change read from the slot to its flush), ``cdc.load_documents`` (the documents re-read from
Postgres), one ``cdc.index_write`` per bulk request to the engine (its HTTP call below it; a
refused attempt is an error span) and the confirmed position as an event; rebuilds and
hold-expiry refreshes are spans of their own. Off, the tracer is the API's no-op one.

One active worker: with a lock (``open_lock``, the stack's and the chart's workers), a worker
first takes the slot's advisory lock (``PgActiveLock``) on a connection it keeps, standing by
and asking again every ``lock_retry_seconds`` while another holds it; once streaming it checks
that connection every ``lock_check_interval`` and before every batch, and stops streaming the
moment it broke (``LockLost``), then stands by again. The slot's own exclusivity (``SlotBusy``)
stays as a second guard.

Crash safety: the slot's confirmed position only moves after a successful write, so a crash
at any point replays at most the unconfirmed batches, and replayed writes are idempotent (same
document id, same or newer version). A search engine that cannot take writes makes the loop
wait and retry the same batch for as long as it takes (health NOT_SERVING meanwhile); nothing
is skipped. Postgres trouble ends the session; the next one resumes from the slot.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from opentelemetry import trace

from cdc_worker import metrics
from cdc_worker.domain import Backoff, Batch, Coalescer, HoldTimers, LagWindow
from cdc_worker.pgoutput import decode, format_lsn
from cdc_worker.ports import (
    ActiveLock,
    AliasMissing,
    Catalog,
    Index,
    Loaded,
    LockLost,
    ReplicationStream,
    SinkUnavailable,
    SlotLost,
    SourceUnavailable,
)
from search_svc.documents import EventDocument

log = logging.getLogger("cdc.replicator")
# The API's proxy: no-op spans until tracing.configure() sets a real provider.
tracer = trace.get_tracer("cdc_worker.replicator")


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    slot: str = "ticketing_search"
    # Longest a committed change waits for more to coalesce with while the stream is busy.
    batch_max_seconds: float = 0.05
    # Write a batch once it touches this many events, however young.
    batch_max_events: int = 2000
    backfill_chunk: int = 1000
    status_interval: float = 15.0
    # How often an idle worker checks that the index still exists (the engine may restart).
    index_check_interval: float = 5.0
    idle_wait: float = 0.5
    # How often an idle worker asks the server for its WAL position, to confirm it.
    position_interval: float = 1.0
    # Log progress of a large transaction at this many changes, twice as many, four times...
    progress_every: int = 10_000
    # A standby asks for the active worker's lock this often.
    lock_retry_seconds: float = 1.0
    # How often a streaming worker makes sure it still holds the lock (and before each confirm).
    lock_check_interval: float = 0.5


class Stopped(Exception):
    """The worker was asked to stop; nothing more is written or confirmed."""


@dataclasses.dataclass
class Counters:
    transactions: int = 0
    changes: int = 0
    ticket_changes: int = 0
    batches: int = 0
    documents: int = 0
    deletes: int = 0


class Replicator:
    def __init__(
        self,
        *,
        open_catalog: Callable[[], Catalog],
        open_stream: Callable[[], ReplicationStream],
        index: Index,
        options: Options | None = None,
        on_health: Callable[[bool], None] = lambda healthy: None,
        open_lock: Callable[[], ActiveLock] | None = None,
        on_role: Callable[[str], None] = lambda role: None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._open_catalog = open_catalog
        self._open_stream = open_stream
        self._index = index
        self._options = options or Options()
        self._on_health = on_health
        self._open_lock = open_lock
        self._on_role = on_role
        self._lock: ActiveLock | None = None
        self._lock_checked = 0.0
        self._clock = clock
        self._now = now
        self._healthy: bool | None = None
        self._timers = HoldTimers()
        self._lags = LagWindow()
        self.counters = Counters()
        # The highest version written so far: timer refreshes are written with it.
        self._applied = 0
        self._confirmed = 0

    # --- the outer loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Replicate until ``stop`` is set, surviving outages of either side."""
        backoff = Backoff()
        while not stop.is_set():
            try:
                self._lock = self._wait_for_lock(stop)
                self._session(stop, backoff)
            except Stopped:
                break
            except LockLost as exc:
                self._health(False)
                log.error("stopped streaming: %s; standing by for the lock", exc)
            except SlotLost as exc:
                log.error("replication slot %s is lost: %s", self._options.slot, exc)
            except (SourceUnavailable, SinkUnavailable) as exc:
                self._health(False)
                delay = backoff.next()
                log.warning("replication paused: %s; retrying in %.1f s", exc, delay)
                stop.wait(delay)
            except Exception:
                self._health(False)
                delay = backoff.next()
                log.exception("replication failed; restarting in %.1f s", delay)
                stop.wait(delay)
            finally:
                self._release_lock()
        log.info("replication stopped at %s", format_lsn(self._confirmed))

    # --- the active worker's lock -------------------------------------------------------------

    def _wait_for_lock(self, stop: threading.Event) -> ActiveLock | None:
        """Stand by until this worker holds the lock (None: no lock is configured). At most one
        worker streams the slot: the one whose session holds the advisory lock."""
        if self._open_lock is None:
            return None
        announced = False
        while True:
            if stop.is_set():
                raise Stopped
            try:
                lock = self._open_lock()
            except SourceUnavailable as exc:
                log.warning("cannot ask for the active worker's lock: %s", exc)
            else:
                try:
                    if lock.try_acquire():
                        self._lock_checked = self._clock()
                        self._on_role("active")
                        log.info("holding the active worker's lock for slot %s", self._options.slot)
                        return lock
                except SourceUnavailable as exc:
                    log.warning("cannot ask for the active worker's lock: %s", exc)
                lock.close()
                if not announced:
                    announced = True
                    self._on_role("standby")
                    log.info(
                        "standing by: another worker holds the lock of slot %s; asking every "
                        "%.1f s",
                        self._options.slot,
                        self._options.lock_retry_seconds,
                    )
            stop.wait(self._options.lock_retry_seconds)

    def _check_lock(self, *, now: bool = False) -> None:
        """Raise LockLost unless the lock is still held (every lock_check_interval, or now)."""
        if self._lock is None:
            return
        at = self._clock()
        if now or at - self._lock_checked >= self._options.lock_check_interval:
            self._lock.check()
            self._lock_checked = at

    def _release_lock(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            self._on_role("standby")
            try:
                lock.close()
            except Exception:
                log.warning("closing the lock's connection failed", exc_info=True)

    def _session(self, stop: threading.Event, backoff: Backoff) -> None:
        catalog = self._open_catalog()
        stream: ReplicationStream | None = None
        try:
            start = self._prepare(catalog, stop)
            stream = self._open_stream()
            stream.start(start)
            log.info(
                "streaming from slot %s at %s", self._options.slot, format_lsn(start),
                extra={"slot": self._options.slot, "start_lsn": format_lsn(start)},
            )  # fmt: skip
            self._health(True)
            backoff.reset()
            self._stream(catalog, stream, start, stop)
        finally:
            if stream is not None:
                stream.close()
            catalog.close()

    # --- slot and index --------------------------------------------------------------------

    def _prepare(self, catalog: Catalog, stop: threading.Event) -> int:
        """The position to stream from, after making sure slot and index exist."""
        slot = catalog.slot()
        lost = ""
        if slot is not None and slot.invalidation:
            lost = slot.invalidation
            log.error(
                "REPLICATION SLOT %s WAS INVALIDATED BY POSTGRES (%s): the changes it kept are "
                "gone; dropping it and rebuilding the search index from Postgres",
                self._options.slot,
                lost,
                extra={"slot": self._options.slot, "invalidation": lost},
            )
            catalog.drop_slot()
            slot = None
        if slot is None:
            start = catalog.create_slot()
            populated = self._index.alias_exists() and self._index.document_count() > 0
            if populated or lost:
                log.error(
                    "REPLICATION SLOT %s WAS MISSING while the index holds documents: changes "
                    "may have been missed; REBUILDING the search index from Postgres",
                    self._options.slot,
                    extra={"slot": self._options.slot, "start_lsn": format_lsn(start)},
                )
                reason = "the replication slot was lost"
            else:
                log.info(
                    "created replication slot %s at %s",
                    self._options.slot,
                    format_lsn(start),
                    extra={"slot": self._options.slot, "start_lsn": format_lsn(start)},
                )
                reason = "initial backfill"
            self._rebuild(catalog, start, reason, stop=stop)
        else:
            start = slot.confirmed_lsn
            if not self._index.alias_exists():
                self._rebuild(catalog, start, "the index is missing (a new engine)", stop=stop)
            else:
                # Holds may have lapsed while the worker was away: no write announces that.
                held = catalog.events_with_holds()
                if held:
                    self._write_documents(
                        catalog, Batch(events=held), start, stop=stop, keepalive=None
                    )
        self._applied = max(self._applied, start)
        self._confirmed = start
        return start

    def _rebuild(
        self,
        catalog: Catalog,
        version: int,
        reason: str,
        *,
        stop: threading.Event,
        keepalive: Callable[[], None] | None = None,
        xids: Sequence[int] = (),
    ) -> None:
        """Every document from Postgres into a new index, then the alias swapped to it."""
        with tracer.start_as_current_span("cdc.rebuild", attributes={"cdc.reason": reason}):
            self._rebuild_traced(
                catalog, version, reason, stop=stop, keepalive=keepalive, xids=xids
            )

    def _rebuild_traced(
        self,
        catalog: Catalog,
        version: int,
        reason: str,
        *,
        stop: threading.Event,
        keepalive: Callable[[], None] | None,
        xids: Sequence[int],
    ) -> None:
        log.info("rebuilding the search index from Postgres: %s", reason)
        metrics.REBUILDS.inc()
        began = time.monotonic()
        retry = Backoff(0.2, 5.0)
        while True:
            try:
                target = self._index.new_index()
                count = 0
                expiries: list[tuple[str, dt.datetime | None]] = []
                for chunk in catalog.all_documents(self._options.backfill_chunk, xids):
                    self._index.load(target, [item.document for item in chunk], version)
                    count += len(chunk)
                    expiries.extend((i.document.event_id, i.next_hold_expiry) for i in chunk)
                    if keepalive is not None:
                        keepalive()
                    if stop.is_set():
                        raise Stopped
                    self._check_lock()
                self._check_lock(now=True)  # only the lock's holder points the alias
                self._index.publish(target)
                break
            except SinkUnavailable as exc:
                self._wait_for_sink(exc, retry, stop, keepalive, what="the rebuild")
        self._timers.clear()
        for event_id, expiry in expiries:
            self._timers.schedule(event_id, expiry)
        seconds = time.monotonic() - began
        self._health(True)
        log.info(
            "search index rebuilt: %d documents in %.2f s (%.0f/s)",
            count,
            seconds,
            count / seconds if seconds else 0,
            extra={"documents": count, "seconds": round(seconds, 3), "reason": reason},
        )

    # --- streaming ---------------------------------------------------------------------------

    def _stream(
        self, catalog: Catalog, stream: ReplicationStream, start: int, stop: threading.Event
    ) -> None:
        coalescer = Coalescer()
        options = self._options
        next_status = self._clock() + options.status_interval
        next_check = self._clock() + options.index_check_interval
        next_position = self._clock()
        while True:
            if stop.is_set():
                raise Stopped
            self._check_lock()
            payload = stream.read()
            if payload is not None:
                coalescer.feed(decode(payload), self._clock())
                changes = coalescer.transaction_changes
                if _is_milestone(changes, options.progress_every):
                    log.info(
                        "large transaction %s in progress: %d changes received",
                        coalescer.transaction_xid,
                        changes,
                        extra={"xid": coalescer.transaction_xid, "changes": changes},
                    )
                if self._ready(coalescer.batch):
                    self._flush(coalescer.take(), catalog, stream, stop)
                continue
            # Nothing more buffered: write what has committed, then look after the rest.
            if not coalescer.batch.is_empty():
                self._flush(coalescer.take(), catalog, stream, stop)
                continue
            due = self._timers.pop_due(self._now())
            if due:
                batch = Batch(events=due)
                with tracer.start_as_current_span(
                    "cdc.hold_expiry_refresh", attributes={"cdc.events": len(due)}
                ):
                    self._write_documents(catalog, batch, self._applied, stop, stream.keepalive)
                continue
            now = self._clock()
            if not coalescer.in_transaction:
                # Everything received is applied: the slot need not keep the WAL up to the
                # server's position (other tables' changes, idle periods). Ask for that
                # position now and then; the answer arrives as a keepalive.
                if stream.server_lsn > self._confirmed:
                    self._confirm(stream, stream.server_lsn)
                elif now >= next_position:
                    next_position = now + options.position_interval
                    stream.keepalive(reply=True)
            if now >= next_check:
                next_check = now + options.index_check_interval
                if not self._index.alias_exists():
                    self._rebuild(
                        catalog,
                        self._applied,
                        "the index disappeared (the engine restarted)",
                        stop=stop,
                        keepalive=stream.keepalive,
                    )
            if now >= next_status:
                next_status = now + options.status_interval
                self._status(catalog)
            stream.wait(self._idle_wait())

    def _ready(self, batch: Batch) -> bool:
        if batch.is_empty():
            return False
        if batch.rebuild:
            return True
        touched = len(batch.events) + len(batch.venues) + len(batch.performers)
        if touched >= self._options.batch_max_events:
            return True
        opened = batch.opened_at if batch.opened_at is not None else self._clock()
        return self._clock() - opened >= self._options.batch_max_seconds

    def _idle_wait(self) -> float:
        wait = self._options.idle_wait
        due = self._timers.next_due()
        if due is not None:
            wait = min(wait, max(0.0, (due - self._now()).total_seconds()))
        return wait

    def _flush(
        self, batch: Batch, catalog: Catalog, stream: ReplicationStream, stop: threading.Event
    ) -> None:
        # Nothing is written or confirmed by a worker that may have lost the lock.
        self._check_lock(now=True)
        attributes = {
            "cdc.slot": self._options.slot,
            "cdc.transactions": batch.transactions,
            "cdc.changes": batch.changes,
            "cdc.ticket_changes": batch.ticket_changes,
            "cdc.events": len(batch.events),
            "cdc.end_lsn": format_lsn(batch.end_lsn),
            "cdc.rebuild": batch.rebuild,
        }
        with tracer.start_as_current_span(
            "cdc.batch", kind=trace.SpanKind.CONSUMER, attributes=attributes
        ) as span:
            if span.is_recording():
                self._trace_read(batch)
            self._flush_traced(batch, catalog, stream, stop)
            span.add_event("confirmed", {"cdc.lsn": format_lsn(self._confirmed)})

    def _trace_read(self, batch: Batch) -> None:
        """The batch's time in the stream, as a span ending now: from its first change read
        from the slot (``opened_at``, on the monotonic clock) to this flush."""
        waited = max(0.0, self._clock() - batch.opened_at) if batch.opened_at is not None else 0
        now = time.time_ns()
        read = tracer.start_span(
            "cdc.read_slot",
            start_time=now - int(waited * 1e9),
            attributes={"cdc.changes": batch.changes, "cdc.transactions": batch.transactions},
        )
        read.end(end_time=now)

    def _flush_traced(
        self, batch: Batch, catalog: Catalog, stream: ReplicationStream, stop: threading.Event
    ) -> None:
        version = max(batch.end_lsn, self._applied)
        if batch.rebuild:
            self._rebuild(
                catalog,
                version,
                "a table was truncated",
                stop=stop,
                keepalive=stream.keepalive,
                xids=batch.xids,
            )
        elif batch.touches_documents():
            self._write_documents(catalog, batch, version, stop, stream.keepalive)
        self._applied = version
        self._confirm(stream, batch.end_lsn)
        seen = self._now()
        for committed in batch.commit_times:
            lag = (seen - committed).total_seconds()
            self._lags.add(lag)
            metrics.LAG.observe(max(0.0, lag))
            metrics.LAST_LAG.set(lag)
        metrics.TRANSACTIONS.inc(batch.transactions)
        self.counters.transactions += batch.transactions
        self.counters.changes += batch.changes
        self.counters.ticket_changes += batch.ticket_changes
        self.counters.batches += 1

    def _confirm(self, stream: ReplicationStream, lsn: int) -> None:
        if lsn > self._confirmed:
            stream.confirm(lsn)
            self._confirmed = lsn
        metrics.RETAINED_WAL.set(max(0, stream.server_lsn - self._confirmed))

    def _write_documents(
        self,
        catalog: Catalog,
        batch: Batch,
        version: int,
        stop: threading.Event,
        keepalive: Callable[[], None] | None,
    ) -> None:
        """Read the batch's documents from Postgres and write them; an event that is gone from
        Postgres loses its document."""
        if batch.refresh_all:
            chunks: Iterable[list[Loaded]] = catalog.all_documents(
                self._options.backfill_chunk, batch.xids
            )
        else:
            with tracer.start_as_current_span(
                "cdc.load_documents",
                kind=trace.SpanKind.CLIENT,
                attributes={"db.system": "postgresql", "cdc.events": len(batch.events)},
            ):
                chunks = [
                    catalog.documents(batch.events, batch.venues, batch.performers, batch.xids)
                ]
        present: set[str] = set()
        for chunk in chunks:
            upserts = [item.document for item in chunk]
            present.update(d.event_id for d in upserts)
            if not self._write(catalog, upserts, (), version, stop, keepalive):
                return  # the index was rebuilt from Postgres instead
            for item in chunk:
                self._timers.schedule(item.document.event_id, item.next_hold_expiry)
        gone = sorted(batch.events - present)
        if gone:
            self._write(catalog, (), gone, version, stop, keepalive)
            for event_id in gone:
                self._timers.schedule(event_id, None)

    def _write(
        self,
        catalog: Catalog,
        upserts: Sequence[EventDocument],
        deletes: Sequence[str],
        version: int,
        stop: threading.Event,
        keepalive: Callable[[], None] | None,
    ) -> bool:
        """Write until the engine takes it; False when the index had to be rebuilt instead."""
        if not upserts and not deletes:
            return True
        retry = Backoff(0.1, 2.0)
        while True:
            try:
                with tracer.start_as_current_span(
                    "cdc.index_write",
                    kind=trace.SpanKind.CLIENT,
                    attributes={
                        "cdc.documents": len(upserts),
                        "cdc.deletes": len(deletes),
                        "cdc.version": version,
                    },
                ):
                    report = self._index.write(upserts, deletes, version)
                break
            except SinkUnavailable as exc:
                self._wait_for_sink(exc, retry, stop, keepalive, what=f"{len(upserts)} documents")
            except AliasMissing:
                self._rebuild(
                    catalog,
                    version,
                    "the index disappeared (the engine restarted)",
                    stop=stop,
                    keepalive=keepalive,
                )
                return False
        self._health(True)
        self.counters.documents += report.written
        self.counters.deletes += len(deletes)
        if report.rejected:
            log.error(
                "the search engine refused %d document(s); they stay as they were: %s",
                len(report.rejected),
                "; ".join(f"{doc}: {why}" for doc, why in report.rejected[:5]),
            )
        return True

    def _wait_for_sink(
        self,
        exc: Exception,
        retry: Backoff,
        stop: threading.Event,
        keepalive: Callable[[], None] | None,
        *,
        what: str,
    ) -> None:
        self._health(False)
        delay = retry.next()
        log.warning(
            "search engine unavailable (%s): holding %s, retrying in %.1f s (nothing is "
            "skipped; the slot is not confirmed meanwhile)",
            exc,
            what,
            delay,
            extra={"attempt": retry.attempts},
        )
        if keepalive is not None:
            keepalive()
        if stop.wait(delay):
            raise Stopped

    # --- operations --------------------------------------------------------------------------

    def _health(self, healthy: bool) -> None:
        if healthy != self._healthy:
            self._healthy = healthy
            self._on_health(healthy)

    def _status(self, catalog: Catalog) -> None:
        try:
            slot = catalog.slot_status()
        except SourceUnavailable:
            slot = None
        p50, p99 = self._lags.percentile(50), self._lags.percentile(99)
        counters = dataclasses.asdict(self.counters)
        extra: dict[str, object] = {
            "slot": self._options.slot,
            "confirmed_lsn": format_lsn(self._confirmed),
            "commit_to_visible_p50_ms": round(p50 * 1000, 1) if p50 is not None else None,
            "commit_to_visible_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "hold_timers": len(self._timers),
            **counters,
        }
        if slot is not None:
            extra |= {
                "server_lsn": format_lsn(slot.server_lsn),
                "lag_bytes": slot.lag_bytes,
                "slot_retained_bytes": slot.retained_bytes,
                "wal_status": slot.wal_status,
            }
        log.info(
            "replication status: %s behind, slot keeps %s of WAL, commit-to-visible p99 %s ms",
            f"{slot.lag_bytes} bytes" if slot else "?",
            f"{slot.retained_bytes} bytes" if slot else "?",
            extra["commit_to_visible_p99_ms"],
            extra=extra,
        )
        self._lags.clear()


def _is_milestone(changes: int, every: int) -> bool:
    """True at every, 2 * every, 4 * every, ...: a few lines even for a huge transaction."""
    if changes < every or changes % every:
        return False
    multiple = changes // every
    return multiple & (multiple - 1) == 0
