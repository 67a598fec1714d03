"""The CDC worker on the real stack: killed with SIGKILL in the middle of a large transaction it
resumes and the index equals Postgres; a search engine that stops answering holds the worker
(nothing confirmed, nothing skipped) and searches fail fast; a restarted, empty engine is
backfilled; a lost replication slot is rebuilt, loudly.

Every test runs through both official search clients (``opensearch-py`` 3.x and
``elasticsearch`` 9.x), for the CDC worker's writes and the search service's reads alike: the
``stack`` fixture is parametrized at module scope, so the module runs once per client. The
OpenSearch run is the shared stack (``auto``: the embedded engine says it is OpenSearch); the
Elasticsearch run is a stack of its own started with ``--search-engine elasticsearch`` (one stack
start, not one per test). The fixture checks which client the worker and the search service use.

These tests stop and kill processes of the stack (found in ``run/stack.json``) and leave them
running again when they end.
"""

import datetime as dt
import json
import os
import shutil
import signal
import time
import urllib.request
import uuid
from contextlib import contextmanager

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2
from ticketing.search.v1 import search_pb2

from search_svc.adapters.engine import detect
from tests.conftest import log_tails, new_state_dir, pick_port_layout, run_ticketing, stack_for
from tests.helpers import service_channel

pytestmark = pytest.mark.integration

SLOT = "ticketing_search"
CONVERGE_S = 90.0

ENGINES = ["opensearch", "elasticsearch"]


@pytest.fixture(scope="module", params=ENGINES)
def stack(request, stack):
    """The stack whose CDC worker and search service speak through one client: the shared
    stack for OpenSearch, a stack of the module's own for Elasticsearch."""
    if request.param == "opensearch":
        yield _speaking(stack, request.param)
        return
    state_dir, layout = new_state_dir("ticketing-cdc-es-"), pick_port_layout()
    try:
        started = run_ticketing(
            state_dir,
            "up", "--detach", "--demo-data", "small", "--search-engine", request.param,
            *layout.up_args(),
        )  # fmt: skip
        if started.returncode != 0:
            pytest.fail(
                f"ticketing up --search-engine {request.param} failed:\n{started.stdout}\n"
                f"{started.stderr}\n{log_tails(state_dir)}",
                pytrace=False,
            )
        yield _speaking(stack_for(state_dir, layout), request.param)
    finally:
        if request.session.testsfailed:
            print(f"\n--- logs of the {request.param} stack ---\n{log_tails(state_dir)}")
        run_ticketing(state_dir, "down", timeout=120)
        shutil.rmtree(state_dir, ignore_errors=True)


def _speaking(stack, engine: str):
    """The stack, once it is seen that its CDC worker and search service use ``engine``'s
    client: the one they are told to use, or ``auto`` and the engine says it is that one."""
    for name in ("cdc-worker", "search"):
        pid = component(stack, name)["pid"]
        environ = dict(
            item.split("=", 1)
            for item in open(f"/proc/{pid}/environ", "rb").read().decode().split("\0")
            if "=" in item
        )
        told = environ["TICKETING_SEARCH_ENGINE"]
        assert told == engine or (told == "auto" and detect(stack.search_url) == engine), (
            f"{name} speaks through {told}, not {engine}"
        )
    return stack


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-cdc', role='operator')}"),)


# --- the stack's processes ---------------------------------------------------------------------


def component(stack, name: str) -> dict:
    snapshot = json.loads((stack.state_dir / "run" / "stack.json").read_text())
    return next(c for c in snapshot["components"] if c["name"] == name)


def wait_running(stack, name: str, *, other_than: int | None = None, timeout: float = 60) -> int:
    """The pid of the component once the supervisor reports it running (again)."""
    deadline = time.monotonic() + timeout
    while True:
        found = component(stack, name)
        if found["status"] == "running" and found["pid"] and found["pid"] != other_than:
            return int(found["pid"])
        assert time.monotonic() < deadline, f"{name} did not come back: {found}"
        time.sleep(0.1)


@contextmanager
def stopped(pid: int):
    """SIGSTOP a process for the duration of the block (it is alive, it just does not run)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def worker_health(stack) -> int:
    with service_channel(stack, "cdc-worker") as ch:
        reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status


def log_since(stack, offset: int) -> str:
    with (stack.state_dir / "logs" / "cdc-worker.log").open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def log_size(stack) -> int:
    return (stack.state_dir / "logs" / "cdc-worker.log").stat().st_size


# --- index versus Postgres ---------------------------------------------------------------------


def postgres_documents(db) -> dict[str, tuple]:
    rows = db.execute(
        """
        SELECT e.id::text, e.name, v.city, e.type,
               count(t.id) FILTER (WHERE ticket_is_available(t.status, t.hold_expire_time)),
               min(t.price_minor) FILTER (WHERE ticket_is_available(t.status, t.hold_expire_time))
        FROM events e JOIN venues v ON v.id = e.venue_id
        LEFT JOIN tickets t ON t.event_id = e.id
        GROUP BY e.id, v.city
        """
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4], r[5], r[4] == 0) for r in rows}


def index_documents(stack) -> dict[str, tuple]:
    body = json.dumps({"size": 10_000, "query": {"match_all": {}}}).encode()
    request = urllib.request.Request(  # noqa: S310 (the stack's engine, over http)
        f"{stack.search_url}/events/_search",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
        hits = json.loads(response.read())["hits"]["hits"]
    return {
        h["_id"]: (
            h["_source"]["name"],
            h["_source"]["city"],
            h["_source"]["type"],
            h["_source"]["available_tickets"],
            h["_source"]["min_available_price_minor"],
            h["_source"]["sold_out"],
        )
        for h in hits
    }


def assert_index_converges(stack, db, timeout: float = CONVERGE_S) -> None:
    deadline = time.monotonic() + timeout
    while True:
        expected = postgres_documents(db)
        try:
            actual = index_documents(stack)
        except OSError:
            actual = {}
        if actual == expected:
            return
        if time.monotonic() > deadline:
            missing = sorted(set(expected) - set(actual))[:5]
            extra = sorted(set(actual) - set(expected))[:5]
            differ = [
                (k, expected[k], actual[k])
                for k in expected
                if k in actual and expected[k] != actual[k]
            ][:5]
            pytest.fail(f"index != Postgres: missing {missing}, extra {extra}, differ {differ}")
        time.sleep(0.2)


def slot_confirmed(db) -> int:
    (lsn,) = db.execute(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (SLOT,),
    ).fetchone()
    return int(lsn)


def wait_confirmed(db, lsn: int, timeout: float = 30) -> None:
    """The slot's confirmed position reaches ``lsn`` (the idle worker confirms what it has
    applied, and asks the server for its position every second)."""
    deadline = time.monotonic() + timeout
    while slot_confirmed(db) < lsn:
        assert time.monotonic() < deadline, "the slot's position did not move on"
        time.sleep(0.1)


def current_lsn(db) -> int:
    (lsn,) = db.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return int(lsn)


# --- data ----------------------------------------------------------------------------------------


def make_event(catalog, operator, *, rows: int, seats: int, days_ahead: int) -> str:
    tag = uuid.uuid4().hex[:6]
    venue = catalog.CreateVenue(
        catalog_pb2.CreateVenueRequest(
            venue=catalog_pb2.Venue(
                name=f"CDC Dome {tag}",
                city="Lisbon",
                country_code="PT",
                location=common_pb2.GeoPoint(latitude=38.72, longitude=-9.14),
                time_zone="Europe/Lisbon",
                seat_map=catalog_pb2.SeatMap(
                    sections=[
                        catalog_pb2.Section(
                            name=f"S{s}",
                            price_tier="standard",
                            rows=[
                                catalog_pb2.Row(label=str(r + 1), seat_count=seats)
                                for r in range(rows)
                            ],
                        )
                        for s in range(10)
                    ]
                ),
            )
        ),
        metadata=operator,
    )
    performer = catalog.CreatePerformer(
        catalog_pb2.CreatePerformerRequest(performer=catalog_pb2.Performer(name=f"CDC {tag}")),
        metadata=operator,
    )
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=days_ahead)
    event = catalog.CreateEvent(
        catalog_pb2.CreateEventRequest(
            event=catalog_pb2.Event(
                name=f"CDC Night {tag}",
                type=catalog_pb2.EVENT_TYPE_CONCERT,
                venue_id=venue.id,
                performer_id=performer.id,
                start_time=timestamp_pb2.Timestamp(seconds=int(start.timestamp())),
                currency_code="EUR",
            )
        ),
        metadata=operator,
    )
    catalog.GenerateTickets(
        catalog_pb2.GenerateTicketsRequest(event_id=event.id, tier_prices_minor={"standard": 900}),
        metadata=operator,
        timeout=120,
    )
    return event.id


# --- tests ---------------------------------------------------------------------------------------


def test_sigkill_in_the_middle_of_a_large_transaction_then_the_index_equals_postgres(
    stack, db, catalog, operator
):
    big = make_event(catalog, operator, rows=50, seats=100, days_ahead=500)  # 50,000 tickets
    assert_index_converges(stack, db)
    pid = wait_running(stack, "cdc-worker")
    offset = log_size(stack)
    with db.transaction():
        (xid,) = db.execute("SELECT txid_current() % 4294967296").fetchone()
        db.execute(
            "UPDATE tickets SET status = 'held', holder_user_id = 'bulk',"
            " hold_expire_time = now() + interval '1 hour' WHERE event_id = %s",
            (big,),
        )
        db.execute("UPDATE tickets SET price_minor = price_minor + 1 WHERE event_id = %s", (big,))
        db.execute("UPDATE events SET name = 'CDC Night, sold out' WHERE id = %s", (big,))
    committed = current_lsn(db)
    # 100,000 changes: wait until the worker is receiving them, then kill it mid-way.
    deadline = time.monotonic() + 60
    while f'"xid": {xid}, "changes"' not in log_since(stack, offset):
        assert time.monotonic() < deadline, "the worker never reported the large transaction"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    assert slot_confirmed(db) < committed, "the worker confirmed before it had written"
    wait_running(stack, "cdc-worker", other_than=pid)
    assert_index_converges(stack, db)
    doc = index_documents(stack)[big]
    assert doc == ("CDC Night, sold out", "Lisbon", "concert", 0, None, True)
    wait_confirmed(db, committed)


def test_a_hung_engine_holds_changes_unconfirmed_and_searches_fail_fast(stack, db, search):
    assert_index_converges(stack, db)
    (event_id,) = db.execute("SELECT id::text FROM events ORDER BY start_time LIMIT 1").fetchone()
    new_name = f"Renamed while the engine hung {uuid.uuid4().hex[:6]}"
    engine = wait_running(stack, "search-engine")
    with stopped(engine):
        db.execute("UPDATE events SET name = %s WHERE id = %s", (new_name, event_id))
        committed = current_lsn(db)
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            search.SearchEvents(search_pb2.SearchEventsRequest(term="night"), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # answered, not timed out
        info = error_details_pb2.ErrorInfo()
        rpc_status.from_call(err.value).details[0].Unpack(info)
        assert info.reason == "DEPENDENCY_UNAVAILABLE"
        assert time.monotonic() - started < 30
        deadline = time.monotonic() + 30
        while worker_health(stack) != health_pb2.HealthCheckResponse.NOT_SERVING:
            assert time.monotonic() < deadline, "the worker kept saying SERVING"
            time.sleep(0.2)
        assert slot_confirmed(db) < committed  # held, not skipped
    deadline = time.monotonic() + 60
    while index_documents(stack).get(event_id, ("",))[0] != new_name:
        assert time.monotonic() < deadline, "the held change never reached the index"
        time.sleep(0.1)
    wait_confirmed(db, committed)
    while worker_health(stack) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    search.SearchEvents(search_pb2.SearchEventsRequest(term=new_name), timeout=30)


def test_a_restarted_empty_engine_is_backfilled_and_search_recovers_by_itself(stack, db, search):
    assert_index_converges(stack, db)
    engine = wait_running(stack, "search-engine")
    os.kill(engine, signal.SIGKILL)
    with pytest.raises(grpc.RpcError) as err:
        search.SearchEvents(search_pb2.SearchEventsRequest(), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    wait_running(stack, "search-engine", other_than=engine)
    assert_index_converges(stack, db)
    deadline = time.monotonic() + 30
    while True:
        try:
            response = search.SearchEvents(search_pb2.SearchEventsRequest(), timeout=30)
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert response.total_size > 0


def test_a_lost_slot_is_said_loudly_and_the_index_rebuilt(stack, db, catalog, operator):
    doomed = make_event(catalog, operator, rows=1, seats=1, days_ahead=600)
    assert_index_converges(stack, db)
    worker = wait_running(stack, "cdc-worker")
    offset = log_size(stack)
    with stopped(worker):
        db.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE slot_name = %s AND active_pid IS NOT NULL",
            (SLOT,),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                db.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
                break
            except psycopg.errors.ObjectInUse:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        # A change the dropped slot will never deliver.
        db.execute("DELETE FROM events WHERE id = %s", (doomed,))
    assert_index_converges(stack, db)
    assert doomed not in index_documents(stack)
    log = log_since(stack, offset)
    assert "REPLICATION SLOT ticketing_search WAS MISSING" in log
    assert '"level": "ERROR"' in log
