"""CatalogService/WatchAvailability through the gateway (native gRPC, gRPC-Web, REST): a
snapshot, then holds, sales and lapsed holds as they happen, one upstream subscription per
catalog process whatever the number of watchers, and watchers cleaned up when they go."""

import asyncio
import http.client
import json
import queue
import struct
import threading
import time
import uuid

import grpc
import pytest
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2

from tests.helpers import (
    aio_service_channel,
    error_reason,
    make_event,
    make_venue,
    rest,
    service_channel,
)
from tests.integration.test_metrics import eventually, sample, scrape

pytestmark = pytest.mark.integration

# The promise is 1 s from commit to watcher (p99); the margin covers a CI machine 2-3x slower
# than a developer's. Measured figures are printed (and benchmarked in bench/watch_fanout.py).
CHANGE_BOUND_S = 1.0
MARGIN_S = 2.0
AVAILABLE = catalog_pb2.TICKET_STATUS_AVAILABLE
HELD = catalog_pb2.TICKET_STATUS_HELD
BOOKED = catalog_pb2.TICKET_STATUS_BOOKED

_day = iter(range(1300, 1600, 3))


def auth(stack, user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.token(user)}"),)


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-watch-seats', role='operator')}"),)


@pytest.fixture(scope="module")
def booking(channel):
    return booking_pb2_grpc.BookingServiceStub(channel)


def new_event(catalog, operator, *, sections=2, rows=2, seats=5) -> tuple[str, list]:
    venue = make_venue(catalog, operator, sections=sections, rows=rows, seats=seats)
    event = make_event(catalog, operator, venue.id, days_ahead=next(_day))
    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return event.id, list(page.tickets)


class Watcher:
    """A WatchAvailability stream read on a thread; updates land in a queue with the time
    they arrived."""

    def __init__(self, catalog, event_id: str) -> None:
        self.call = catalog.WatchAvailability(
            catalog_pb2.WatchAvailabilityRequest(event_id=event_id), timeout=120
        )
        self.updates: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for update in self.call:
                self.updates.put((time.monotonic(), update))
        except grpc.RpcError as err:
            self.updates.put((time.monotonic(), err))

    def next(self, timeout: float = 10.0):
        at, update = self.updates.get(timeout=timeout)
        if isinstance(update, grpc.RpcError):
            raise update
        return at, update

    def until(self, ticket_id: str, status, timeout: float) -> float:
        """When a change of ticket_id to status arrived (raises queue.Empty past timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            at, update = self.next(max(0.01, deadline - time.monotonic()))
            if any(c.ticket_id == ticket_id and c.status == status for c in update.changes):
                return at

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(10)


def statuses(snapshot: catalog_pb2.AvailabilitySnapshot) -> dict[str, list[int]]:
    return {
        s.section: [run.status for run in s.runs for _ in range(run.count)]
        for s in snapshot.sections
    }


def test_snapshot_then_a_hold_a_sale_and_a_cancellation_by_someone_else(
    stack, catalog, booking, operator
):
    event_id, tickets = new_event(catalog, operator)
    watcher = Watcher(catalog, event_id)
    try:
        _, first = watcher.next()
        assert first.HasField("snapshot") and not first.changes
        assert statuses(first.snapshot) == {"S00": [AVAILABLE] * 10, "S01": [AVAILABLE] * 10}

        # Someone else holds seat 3 of row 1 in S01: the watcher sees it, in seat order too.
        target = next(t for t in tickets if (t.section, t.row, t.seat) == ("S01", "1", "3"))
        started = time.monotonic()
        booking.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=target.id), metadata=auth(stack, "bob")
        )
        held_after = watcher.until(target.id, HELD, CHANGE_BOUND_S + MARGIN_S) - started

        # A second watcher joining now starts from a snapshot that shows the hold.
        late = Watcher(catalog, event_id)
        _, late_first = late.next()
        assert statuses(late_first.snapshot)["S01"] == [AVAILABLE] * 2 + [HELD] + [AVAILABLE] * 7
        late.close()

        started = time.monotonic()
        booking.ConfirmBooking(
            booking_pb2.ConfirmBookingRequest(
                ticket_id=target.id,
                payment_details=booking_pb2.PaymentDetails(payment_method_id="pm_card_visa"),
            ),
            metadata=auth(stack, "bob"),
        )
        sold_after = watcher.until(target.id, BOOKED, CHANGE_BOUND_S + MARGIN_S) - started

        other = next(t for t in tickets if (t.section, t.row, t.seat) == ("S00", "2", "1"))
        booking.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=other.id), metadata=auth(stack, "carol")
        )
        watcher.until(other.id, HELD, CHANGE_BOUND_S + MARGIN_S)
        started = time.monotonic()
        booking.CancelReservation(
            booking_pb2.CancelReservationRequest(ticket_id=other.id),
            metadata=auth(stack, "carol"),
        )
        back_after = watcher.until(other.id, AVAILABLE, CHANGE_BOUND_S + MARGIN_S) - started
        print(
            f"\nwatcher saw: hold {held_after * 1000:.0f} ms, sale {sold_after * 1000:.0f} ms,"
            f" cancellation {back_after * 1000:.0f} ms after the call was made"
        )
    finally:
        watcher.close()


def test_every_watcher_is_sent_the_same_bytes_and_the_generated_client_reads_them(
    stack, catalog, booking, operator
):
    """An update is encoded once and those bytes go to every watcher of the event, as the
    contract's AvailabilityUpdate. Three streams on one connection, so one catalog process."""
    event_id, tickets = new_event(catalog, operator, sections=1, rows=1, seats=6)
    request = catalog_pb2.WatchAvailabilityRequest(event_id=event_id)
    with service_channel(stack, "catalog", holder="gateway") as direct:
        raw = direct.unary_stream(
            "/ticketing.catalog.v1.CatalogService/WatchAvailability",
            request_serializer=catalog_pb2.WatchAvailabilityRequest.SerializeToString,
            response_deserializer=None,  # the bytes as sent
        )
        streams = [raw(request, timeout=60) for _ in range(3)]
        try:
            snapshots = [next(s) for s in streams]
            changes = []
            for i, ticket in enumerate((tickets[1], tickets[4])):
                booking.ReserveTicket(
                    booking_pb2.ReserveTicketRequest(ticket_id=ticket.id),
                    metadata=auth(stack, f"bytes-{i}"),
                )
                changes.append([next(s) for s in streams])
        finally:
            for s in streams:
                s.cancel()
    for sent in (snapshots, *changes):
        assert len(set(sent)) == 1, "every watcher got the same bytes"
    snapshot = catalog_pb2.AvailabilityUpdate.FromString(snapshots[0])
    assert statuses(snapshot.snapshot) == {"S00": [AVAILABLE] * 6}
    decoded = [catalog_pb2.AvailabilityUpdate.FromString(sent[0]) for sent in changes]
    for update, ticket in zip(decoded, (tickets[1], tickets[4]), strict=True):
        assert not update.HasField("snapshot")
        assert [(c.ticket_id, c.status, c.section, c.seat) for c in update.changes] == [
            (ticket.id, HELD, ticket.section, ticket.seat)
        ]
        assert update.read_time.seconds > 0
    # The control: the bytes are the update's, not one message repeated.
    assert len({snapshots[0], changes[0][0], changes[1][0]}) == 3


def test_a_hold_that_lapses_comes_back_without_any_write(stack, catalog, booking, operator, db):
    event_id, tickets = new_event(catalog, operator, sections=1, rows=1, seats=4)
    watcher = Watcher(catalog, event_id)
    try:
        watcher.next()
        target = tickets[0]
        booking.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=target.id), metadata=auth(stack, "dave")
        )
        watcher.until(target.id, HELD, CHANGE_BOUND_S + MARGIN_S)
        # The hold is made to run out in 1.5 s (the stack's holds last 10 minutes); after
        # that nothing writes to the ticket again.
        (expires,) = db.execute(
            "UPDATE tickets SET hold_expire_time = clock_timestamp() + interval '1.5 s'"
            " WHERE id = %s RETURNING extract(epoch FROM hold_expire_time)",
            (target.id,),
        ).fetchone()
        back_at = watcher.until(target.id, AVAILABLE, 1.5 + CHANGE_BOUND_S + MARGIN_S)
        late_by = time.time() - (time.monotonic() - back_at) - float(expires)
        print(f"\nlapsed hold shown available {late_by * 1000:.0f} ms after it ran out")
        assert late_by >= 0  # never early: the seat really was available again
        (status,) = db.execute(
            "SELECT ticket_effective_status(status, hold_expire_time) FROM tickets WHERE id = %s",
            (target.id,),
        ).fetchone()
        assert status == "available"
    finally:
        watcher.close()


def test_a_burst_of_holds_is_coalesced_into_a_few_messages(stack, catalog, booking, operator):
    event_id, tickets = new_event(catalog, operator, sections=1, rows=4, seats=10)
    watcher = Watcher(catalog, event_id)
    try:
        watcher.next()
        started = time.monotonic()
        for i, ticket in enumerate(tickets[:24]):
            booking.ReserveTicket(
                booking_pb2.ReserveTicketRequest(ticket_id=ticket.id),
                metadata=auth(stack, f"burst-{i}"),
            )
        took = time.monotonic() - started
        seen: set[str] = set()
        messages = 0
        while len(seen) < 24:
            _, update = watcher.next(CHANGE_BOUND_S + MARGIN_S)
            messages += 1
            seen |= {c.ticket_id for c in update.changes if c.status == HELD}
        print(f"\n24 holds in {took:.2f} s reached the watcher in {messages} messages")
        # At most one message per 0.25 s window (plus the window in progress at either end).
        assert messages <= took / 0.25 + 2
        assert seen == {t.id for t in tickets[:24]}
    finally:
        watcher.close()


@pytest.mark.parametrize(
    ("event_id", "code", "reason", "http_status"),
    [
        ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_ID", 400),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND", 404),
    ],
)
def test_a_bad_event_id_is_refused(stack, catalog, event_id, code, reason, http_status):
    with pytest.raises(grpc.RpcError) as err:
        next(
            iter(
                catalog.WatchAvailability(
                    catalog_pb2.WatchAvailabilityRequest(event_id=event_id), timeout=30
                )
            )
        )
    assert err.value.code() == code
    assert error_reason(err.value) == reason
    status, _, body = rest(stack, f"/event/{event_id}/availability:watch")
    assert status == http_status, body


def _watchers(stack) -> float:
    return sample(scrape(stack, "catalog"), "ticketing_availability_watchers")


def _feeds(db) -> int:
    (n,) = db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'catalog-availability'"
    ).fetchone()
    return n


def test_many_watchers_share_one_subscription_and_are_cleaned_up(stack, catalog, operator, db):
    event_id, _ = new_event(catalog, operator)
    before_watchers, before_feeds = _watchers(stack), _feeds(db)
    assert before_feeds >= 1  # every catalog process listens from the start
    watchers = [Watcher(catalog, event_id) for _ in range(25)]
    try:
        for w in watchers:
            w.next()
        assert eventually(lambda: _watchers(stack) >= before_watchers + 25)
        # 25 watchers, still one LISTEN connection per catalog process.
        assert _feeds(db) == before_feeds
    finally:
        for w in watchers:
            w.close()
    # Clients gone (cancelled): the catalog lets go of their streams.
    assert eventually(lambda: _watchers(stack) <= before_watchers, timeout=15)
    print(f"\nwatchers before {before_watchers:.0f}, after closing {_watchers(stack):.0f}")


def _grpc_web_stream(stack, event_id: str):
    """Opens WatchAvailability over gRPC-Web (HTTP/1.1, as a browser does); returns the
    connection and a reader of its messages."""
    connection = http.client.HTTPConnection(*stack.gateway.split(":"), timeout=30)
    message = catalog_pb2.WatchAvailabilityRequest(event_id=event_id).SerializeToString()
    connection.request(
        "POST",
        "/ticketing.catalog.v1.CatalogService/WatchAvailability",
        body=struct.pack(">BI", 0, len(message)) + message,
        headers={
            "content-type": "application/grpc-web+proto",
            "x-grpc-web": "1",
            "accept": "application/grpc-web+proto",
        },
    )
    response = connection.getresponse()
    assert response.status == 200

    def read_message() -> catalog_pb2.AvailabilityUpdate:
        while True:
            flag, length = struct.unpack(">BI", response.read(5))
            frame = response.read(length)
            if not flag & 0x80:
                return catalog_pb2.AvailabilityUpdate.FromString(frame)

    return connection, read_message


def test_grpc_web_and_rest_watchers_see_a_hold(stack, catalog, booking, operator):
    event_id, tickets = new_event(catalog, operator, sections=1, rows=1, seats=6)
    web, read_web = _grpc_web_stream(stack, event_id)
    # REST: Envoy's transcoder streams the messages as the elements of one JSON array.
    rest_conn = http.client.HTTPConnection(*stack.gateway.split(":"), timeout=30)
    rest_conn.request("GET", f"/event/{event_id}/availability:watch")
    rest_response = rest_conn.getresponse()
    assert rest_response.status == 200
    try:
        assert statuses(read_web().snapshot) == {"S00": [AVAILABLE] * 6}
        buffered = b""
        while b"}" not in buffered:
            buffered += rest_response.read1(65536)
        assert buffered.lstrip().startswith(b"[")
        booking.ReserveTicket(
            booking_pb2.ReserveTicketRequest(ticket_id=tickets[4].id),
            metadata=auth(stack, "erin"),
        )
        change = read_web().changes[0]
        assert (change.ticket_id, change.status, change.seat) == (tickets[4].id, HELD, "5")
        # The REST array's second element: {"changes": [...]} after a comma.
        decoder = json.JSONDecoder()
        while True:
            text = buffered.decode().lstrip().lstrip("[").lstrip()
            try:
                snapshot, end = decoder.raw_decode(text)
                rest_tail = text[end:].lstrip().lstrip(",").lstrip()
                second, _ = decoder.raw_decode(rest_tail)
                break
            except json.JSONDecodeError:
                buffered += rest_response.read1(65536)
        assert snapshot["snapshot"]["sections"][0]["runs"] == [
            {"status": "TICKET_STATUS_AVAILABLE", "count": 6}
        ]
        assert second["changes"][0]["ticketId"] == tickets[4].id
        assert second["changes"][0]["status"] == "TICKET_STATUS_HELD"
    finally:
        web.close()
        rest_conn.close()


def _apply(state: dict[str, int], update) -> None:
    for change in update.changes:
        state[change.ticket_id] = change.status


def test_a_watcher_that_stops_reading_holds_back_nobody_and_catches_up(
    stack, catalog, booking, operator, db
):
    event_id, tickets = new_event(catalog, operator, sections=1, rows=1, seats=12)
    fast = Watcher(catalog, event_id)
    # The slow one reads its snapshot, then nothing while the changes happen.
    slow = catalog.WatchAvailability(
        catalog_pb2.WatchAvailabilityRequest(event_id=event_id), timeout=120
    )
    try:
        fast.next()
        first = next(slow)
        order = [t.id for t in sorted(tickets, key=lambda t: int(t.seat))]
        slow_state = dict(zip(order, statuses(first.snapshot)["S00"], strict=True))
        worst = 0.0
        for i, ticket in enumerate(tickets[:8]):
            started = time.monotonic()
            booking.ReserveTicket(
                booking_pb2.ReserveTicketRequest(ticket_id=ticket.id),
                metadata=auth(stack, f"slowtest-{i}"),
            )
            worst = max(worst, fast.until(ticket.id, HELD, CHANGE_BOUND_S + MARGIN_S) - started)
        started = time.monotonic()
        booking.CancelReservation(
            booking_pb2.CancelReservationRequest(ticket_id=tickets[0].id),
            metadata=auth(stack, "slowtest-0"),
        )
        fast.until(tickets[0].id, AVAILABLE, CHANGE_BOUND_S + MARGIN_S)
        # The slow watcher now reads: whatever it was sent brings it to Postgres's state.
        truth = {
            ticket_id: {"available": AVAILABLE, "held": HELD, "booked": BOOKED}[status]
            for ticket_id, status in db.execute(
                "SELECT id::text, ticket_effective_status(status, hold_expire_time)"
                " FROM tickets WHERE event_id = %s",
                (event_id,),
            ).fetchall()
        }
        messages = 0
        deadline = time.monotonic() + CHANGE_BOUND_S + MARGIN_S
        while slow_state != truth and time.monotonic() < deadline:
            update = next(slow)
            messages += 1
            if update.HasField("snapshot"):
                slow_state = dict(zip(order, statuses(update.snapshot)["S00"], strict=True))
            _apply(slow_state, update)
        print(
            f"\nthe reading watcher saw each of 9 changes within {worst * 1000:.0f} ms; the"
            f" one that did not read caught up in {messages} messages"
        )
        assert slow_state == truth
        assert truth[tickets[0].id] == AVAILABLE and truth[tickets[1].id] == HELD
    finally:
        slow.cancel()
        fast.close()


# Above gRPC's default of 3,000 calls that may wait for the asyncio server to pick them up
# (grpc.server.max_pending_requests_hard_limit): past it, a burst of watchers was CANCELLED.
BURST = 5000


def test_a_burst_of_watchers_opening_at_once_all_get_their_snapshot(stack, catalog, operator):
    event_id, _ = new_event(catalog, operator)
    before = _watchers(stack)
    request = catalog_pb2.WatchAvailabilityRequest(event_id=event_id)

    async def burst() -> tuple[int, dict[str, int], float]:
        # One connection, so one catalog process gets the whole burst.
        async with aio_service_channel(stack, "catalog") as channel:
            watch = channel.unary_stream(
                "/ticketing.catalog.v1.CatalogService/WatchAvailability",
                request_serializer=catalog_pb2.WatchAvailabilityRequest.SerializeToString,
                response_deserializer=catalog_pb2.AvailabilityUpdate.FromString,
            )
            snapshots = 0
            errors: dict[str, int] = {}
            every_one_answered = asyncio.Event()

            async def one() -> None:
                nonlocal snapshots
                call = watch(request, timeout=180)
                try:
                    first = await call.read()
                    assert first.HasField("snapshot")
                    snapshots += 1
                except grpc.aio.AioRpcError as err:
                    errors[err.code().name] = errors.get(err.code().name, 0) + 1
                if snapshots + sum(errors.values()) == BURST:
                    every_one_answered.set()
                # Every stream stays open until all have answered: a burst, not a trickle.
                await every_one_answered.wait()
                call.cancel()

            started = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(one() for _ in range(BURST))), 170)
            return snapshots, errors, time.monotonic() - started

    snapshots, errors, took = asyncio.run(burst())
    print(f"\n{BURST:,} watchers opened at once: {snapshots:,} snapshots in {took:.1f} s, {errors}")
    assert errors == {}
    assert snapshots == BURST
    # Gone again before the next test counts watchers.
    assert eventually(lambda: _watchers(stack) <= before, timeout=60)
