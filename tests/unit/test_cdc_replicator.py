"""The replication loop with in-memory fakes of the stream, the catalog and the index: the
order of write and confirm, retries through an engine outage, coalescing, rebuilds."""

import dataclasses
import datetime as dt
import logging
import threading

import pytest
from test_cdc_pgoutput import (
    EVENTS_REL,
    TICKETS_REL,
    begin,
    commit,
    delete,
    relations,
    truncate,
    update,
)

from cdc_worker.pgoutput import UNCHANGED
from cdc_worker.ports import (
    AliasMissing,
    Loaded,
    SinkUnavailable,
    SlotState,
    WriteReport,
)
from cdc_worker.replicator import Options, Replicator
from search_svc.documents import EventDocument

E1, E2, E3 = (f"00000000-0000-0000-0000-0000000000e{i}" for i in (1, 2, 3))
T0 = dt.datetime(2030, 1, 1, 20, tzinfo=dt.UTC)


def document(event_id: str, name: str = "Night", available: int = 10) -> EventDocument:
    return EventDocument(
        event_id=event_id,
        name=name,
        description="A long description kept in TOAST",
        type="concert",
        start_time=T0,
        end_time=T0 + dt.timedelta(hours=3),
        on_sale_time=T0 - dt.timedelta(days=30),
        currency="EUR",
        queue_enabled=False,
        performer_id="p",
        performer_name="Band",
        performer_genre="rock",
        venue_id="v",
        venue_name="Hall",
        city="Lisbon",
        region="",
        country_code="PT",
        latitude=38.7,
        longitude=-9.1,
        time_zone="Europe/Lisbon",
        available_tickets=available,
        min_available_price_minor=5000 if available else None,
    )


class Journal(list):
    """What happened, in order, across the fakes."""


class FakeStream:
    def __init__(self, journal, payloads, stop):
        self.journal, self.payloads, self.stop = journal, list(payloads), stop
        self.started_at = None
        self.server_lsn = 0

    def start(self, start_lsn):
        self.started_at = start_lsn

    def read(self):
        return self.payloads.pop(0) if self.payloads else None

    def wait(self, timeout):
        if not self.payloads:
            self.stop.set()  # the script is played: end the test's run

    def confirm(self, lsn):
        self.journal.append(("confirm", lsn))

    def keepalive(self, reply=False):
        pass

    def close(self):
        pass


class FakeCatalog:
    def __init__(self, journal, documents, slot=None):
        self.journal = journal
        self.rows = {d.event_id: d for d in documents}
        self.expiries = {}
        self.slot_state = slot
        self.created = self.dropped = 0

    def slot(self):
        return self.slot_state

    def create_slot(self):
        self.created += 1
        self.slot_state = SlotState(1000)
        return 1000

    def drop_slot(self):
        self.dropped += 1
        self.slot_state = None

    def slot_status(self):
        return None

    def documents(self, events, venues, performers, xids):
        self.journal.append(("read", tuple(sorted(events)), tuple(xids)))
        return [
            Loaded(self.rows[e], self.expiries.get(e)) for e in sorted(events) if e in self.rows
        ]

    def all_documents(self, chunk, xids=()):
        self.journal.append(("read all",))
        items = [Loaded(d, self.expiries.get(d.event_id)) for d in self.rows.values()]
        for start in range(0, len(items), chunk):
            yield items[start : start + chunk]

    def events_with_holds(self):
        return set()

    def close(self):
        pass


@dataclasses.dataclass
class FakeIndex:
    journal: Journal
    docs: dict = dataclasses.field(default_factory=dict)  # id -> (version, name, available)
    alias: bool = True
    failures: int = 0  # writes that fail with SinkUnavailable before one succeeds
    missing_alias_once: bool = False
    indices: int = 0

    def alias_exists(self):
        return self.alias

    def document_count(self):
        return len(self.docs)

    def write(self, upserts, deletes, version):
        if self.failures:
            self.failures -= 1
            self.journal.append(("write failed",))
            raise SinkUnavailable("connection refused")
        if self.missing_alias_once:
            self.missing_alias_once = False
            self.alias = False
            raise AliasMissing("no such index [events]")
        for doc in upserts:
            if self.docs.get(doc.event_id, (0,))[0] <= version:
                self.docs[doc.event_id] = (version, doc.name, doc.available_tickets)
        for event_id in deletes:
            self.docs.pop(event_id, None)
        self.journal.append(("write", tuple(d.event_id for d in upserts), tuple(deletes), version))
        return WriteReport(written=len(upserts) + len(deletes))

    def new_index(self):
        self.indices += 1
        self.staged = {}
        return f"events-v1-{self.indices}"

    def load(self, index, documents, version):
        self.staged.update({d.event_id: (version, d.name, d.available_tickets) for d in documents})

    def publish(self, index):
        self.docs, self.alias = self.staged, True
        self.journal.append(("publish", index))


SLOT = SlotState(1000)


def run(payloads, *, catalog_docs=(), slot=SLOT, index=None, health=None, **options):
    journal = Journal()
    stop = threading.Event()
    stream = FakeStream(journal, [*relations(), *payloads], stop)
    catalog = FakeCatalog(journal, catalog_docs, slot)
    index = index or FakeIndex(journal)
    index.journal = journal
    replicator = Replicator(
        open_catalog=lambda: catalog,
        open_stream=lambda: stream,
        index=index,
        options=Options(batch_max_seconds=10, **options),
        on_health=(health.append if health is not None else lambda ok: None),
    )
    thread = threading.Thread(target=replicator.run, args=(stop,))
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the replicator did not stop"
    return journal, catalog, index, stream


def ticket_updates(xid: int, lsn: int, event_ids, count: int) -> list[bytes]:
    changes = [
        update(TICKETS_REL, [f"t{i}", event_ids[i % len(event_ids)], "held", "5000"])
        for i in range(count)
    ]
    return [begin(xid, lsn), *changes, commit(lsn + 100)]


def test_a_batch_is_written_then_confirmed_never_the_other_way_round():
    payloads = ticket_updates(7, 2000, [E1, E2], 500) + ticket_updates(8, 3000, [E1], 300)
    journal, _, index, _ = run(payloads, catalog_docs=[document(E1), document(E2)])
    assert journal == [
        ("read", (E1, E2), (7, 8)),
        ("write", (E1, E2), (), 3100),
        ("confirm", 3100),
    ]
    assert index.docs[E1][0] == 3100


def test_an_engine_outage_holds_the_batch_and_retries_until_it_is_written():
    health = []
    index = FakeIndex(Journal(), failures=3)
    journal, *_ = run(
        ticket_updates(7, 2000, [E1], 10), catalog_docs=[document(E1)], index=index, health=health
    )
    steps = [entry[0] for entry in journal]
    assert steps == ["read", "write failed", "write failed", "write failed", "write", "confirm"]
    assert health == [True, False, True]


def test_stopping_during_an_outage_confirms_nothing():
    journal = Journal()
    stop = threading.Event()
    stream = FakeStream(journal, [*relations(), *ticket_updates(7, 2000, [E1], 10)], stop)
    index = FakeIndex(journal, failures=10**6)
    replicator = Replicator(
        open_catalog=lambda: FakeCatalog(journal, [document(E1)], SlotState(1000)),
        open_stream=lambda: stream,
        index=index,
        options=Options(batch_max_seconds=10),
    )
    thread = threading.Thread(target=replicator.run, args=(stop,))
    thread.start()
    while ("write failed",) not in journal:
        thread.join(0.01)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert not [entry for entry in journal if entry[0] == "confirm"]


def test_the_document_comes_from_the_database_not_from_an_unchanged_toast_value():
    renamed = document(E1, name="Renamed Night")
    payloads = [begin(9, 2000), update(EVENTS_REL, [E1, "v", "p", "Renamed Night", UNCHANGED])]
    _, _, index, _ = run([*payloads, commit(2100)], catalog_docs=[renamed])
    assert index.docs[E1] == (2100, "Renamed Night", 10)


def test_an_event_gone_from_the_database_loses_its_document():
    index = FakeIndex(Journal(), docs={E3: (500, "Old", 1)})
    payloads = [begin(9, 2000), delete(EVENTS_REL, [E3, None, None, None, None]), commit(2100)]
    journal, _, index, _ = run(payloads, index=index)
    assert ("write", (), (E3,), 2100) in journal
    assert E3 not in index.docs


def test_first_start_creates_the_slot_backfills_then_streams_from_the_slot():
    index = FakeIndex(Journal(), alias=False)
    journal, catalog, index, stream = run(
        [], catalog_docs=[document(E1), document(E2)], slot=None, index=index
    )
    assert catalog.created == 1 and stream.started_at == 1000
    assert journal[:2] == [("read all",), ("publish", "events-v1-1")]
    assert index.docs == {E1: (1000, "Night", 10), E2: (1000, "Night", 10)}


def test_a_restarted_engine_without_the_index_is_backfilled():
    index = FakeIndex(Journal(), alias=False)
    journal, catalog, index, stream = run([], catalog_docs=[document(E1)], index=index)
    assert catalog.created == 0 and stream.started_at == 1000
    assert ("publish", "events-v1-1") in journal and E1 in index.docs


def test_a_missing_slot_with_a_populated_index_is_rebuilt_loudly(caplog):
    index = FakeIndex(Journal(), docs={E3: (1, "Stale", 1)})
    with caplog.at_level(logging.ERROR):
        _, catalog, index, _ = run([], catalog_docs=[document(E1)], slot=None, index=index)
    assert catalog.created == 1
    assert any("WAS MISSING" in r.message and r.levelno == logging.ERROR for r in caplog.records)
    assert set(index.docs) == {E1}  # the stale document went with the old index


def test_an_invalidated_slot_is_dropped_recreated_and_the_index_rebuilt(caplog):
    with caplog.at_level(logging.ERROR):
        _, catalog, index, _ = run(
            [], catalog_docs=[document(E1)], slot=SlotState(900, invalidation="wal_removed")
        )
    assert catalog.dropped == 1 and catalog.created == 1
    assert any("INVALIDATED" in r.message for r in caplog.records)
    assert set(index.docs) == {E1}


def test_truncate_rebuilds_and_a_deleted_ticket_refreshes_every_document():
    journal, *_ = run(
        [begin(9, 2000), truncate([EVENTS_REL, TICKETS_REL], cascade=True), commit(2100)],
        catalog_docs=[document(E1)],
    )
    assert ("publish", "events-v1-1") in journal and journal[-1] == ("confirm", 2100)
    journal, *_ = run(
        [begin(9, 2000), delete(TICKETS_REL, ["t1", None, None, None]), commit(2100)],
        catalog_docs=[document(E1), document(E2)],
    )
    assert journal == [("read all",), ("write", (E1, E2), (), 2100), ("confirm", 2100)]


def test_an_index_that_vanishes_under_a_write_is_rebuilt_then_the_batch_confirmed():
    index = FakeIndex(Journal(), missing_alias_once=True)
    journal, _, index, _ = run(
        ticket_updates(7, 2000, [E1], 5), catalog_docs=[document(E1), document(E2)], index=index
    )
    assert [e[0] for e in journal] == ["read", "read all", "publish", "confirm"]
    assert set(index.docs) == {E1, E2}


def test_a_lapsing_hold_is_read_again_without_any_change_in_the_stream():
    journal = Journal()
    stop = threading.Event()
    stream = FakeStream(journal, [*relations(), *ticket_updates(7, 2000, [E1], 1)], stop)
    catalog = FakeCatalog(journal, [document(E1, available=0)], SlotState(1000))
    catalog.expiries[E1] = dt.datetime.now(dt.UTC) + dt.timedelta(milliseconds=200)
    index = FakeIndex(journal)

    def wait(timeout):
        if index.docs.get(E1, (0, "", 0))[2]:
            stop.set()
        elif len([e for e in journal if e[0] == "read"]) == 1:
            # The hold lapses in the database: no write, so nothing in the stream.
            catalog.rows[E1] = document(E1, available=1)
            catalog.expiries.pop(E1, None)
            stop.wait(timeout)
        else:
            stop.wait(timeout)

    stream.wait = wait
    replicator = Replicator(
        open_catalog=lambda: catalog, open_stream=lambda: stream, index=index, options=Options()
    )
    thread = threading.Thread(target=replicator.run, args=(stop,))
    thread.start()
    thread.join(timeout=5)
    stop.set()
    thread.join(timeout=5)
    assert [e[0] for e in journal] == ["read", "write", "confirm", "read", "write"]
    assert index.docs[E1] == (2100, "Night", 1)


@pytest.mark.parametrize("events", [2001])
def test_a_batch_touching_many_events_is_written_without_waiting(events):
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(events)]
    journal, *_ = run(
        ticket_updates(7, 2000, ids, events) + ticket_updates(8, 9000, ids[:1], 1),
        catalog_docs=[document(i) for i in ids],
    )
    writes = [e for e in journal if e[0] == "write"]
    assert len(writes) == 2 and len(writes[0][1]) == events
