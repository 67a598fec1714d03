"""Booking as buyers see it, through the gateway: never oversold (with a control case that
proves the check can see an oversell), holds that lapse, idempotent retries, declined cards,
refunds after a lost hold, Stripe webhooks, per-user limits, queue admissions, privacy."""

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid

import grpc
import psycopg
import pytest
import redis
import stripe
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2, catalog_pb2_grpc

from booking_svc.adapters.holds import lock_key
from deploy.stack.state import StateDir, admission_key, read_stack, stripe_secrets
from tests.conftest import new_state_dir, pick_port_layout, start_stack
from tests.conftest import run_ticketing as ticketing
from tests.helpers import error_reason, make_event, make_venue, rest
from ticketing_common import admission

pytestmark = pytest.mark.integration

VISA = "pm_card_visa"
DECLINING = "pm_card_chargeCustomerFail"


def auth(stack, user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.token(user)}"),)


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-booking', role='operator')}"),)


@pytest.fixture(scope="module")
def catalog(stack):
    with grpc.insecure_channel(stack.gateway) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture(scope="module")
def booking(stack):
    with grpc.insecure_channel(stack.gateway) as channel:
        yield booking_pb2_grpc.BookingServiceStub(channel)


_day = iter(range(600, 900, 3))


def new_event(catalog, operator, *, seats: int = 20, **fields) -> tuple[str, list[str]]:
    """A fresh on-sale event with ``seats`` tickets; returns its id and ticket ids."""
    venue = make_venue(catalog, operator, sections=1, rows=1, seats=seats)
    event = make_event(
        catalog, operator, venue.id, days_ahead=next(_day), tiers={"premium": 5000}, **fields
    )
    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return event.id, [t.id for t in page.tickets]


def reserve(booking, stack, user, *ticket_ids, **extra):
    request = booking_pb2.ReserveTicketRequest(
        ticket_id=ticket_ids[0], ticket_ids=ticket_ids[1:], **extra
    )
    return booking.ReserveTicket(request, metadata=auth(stack, user))


def confirm(booking, stack, user, *ticket_ids, method=VISA, **extra):
    request = booking_pb2.ConfirmBookingRequest(
        ticket_id=ticket_ids[0],
        ticket_ids=ticket_ids[1:],
        payment_details=booking_pb2.PaymentDetails(payment_method_id=method),
        **extra,
    )
    return booking.ConfirmBooking(request, metadata=auth(stack, user))


def sold_once(db, ticket_ids) -> dict[str, int]:
    """How many confirmed bookings each ticket is in: the oversell detector."""
    rows = db.execute(
        """
        SELECT t.id::text, count(b.id) FILTER (WHERE b.status = 'confirmed')
        FROM tickets t
        LEFT JOIN booking_tickets bt ON bt.ticket_id = t.id
        LEFT JOIN bookings b ON b.id = bt.booking_id
        WHERE t.id = ANY(%s::uuid[]) GROUP BY t.id
        """,
        (ticket_ids,),
    ).fetchall()
    return dict(rows)


def claimed_twice(claims: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Tickets that more than one buyer was told are theirs."""
    owners: dict[str, set[str]] = {}
    for user, ticket in claims:
        owners.setdefault(ticket, set()).add(user)
    return {t: users for t, users in owners.items() if len(users) > 1}


async def _race(
    gateway: str, tokens: dict[str, str], ticket_ids: list[str], freeze_redis_pid: int | None = None
) -> tuple[list, dict]:
    """Every buyer tries one ticket at once (10 buyers per ticket); returns the claims and
    the count of each answer's status."""
    claims, outcomes = [], {}
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)

        async def buyer(i: int, user: str) -> None:
            ticket = ticket_ids[i % len(ticket_ids)]
            try:
                held = await stub.ReserveTicket(
                    booking_pb2.ReserveTicketRequest(ticket_id=ticket),
                    metadata=(("authorization", f"Bearer {tokens[user]}"),),
                    timeout=30,
                )
                claims.append((user, held.ticket_ids[0]))
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            outcomes[code] = outcomes.get(code, 0) + 1

        async def freeze() -> None:
            if freeze_redis_pid is None:
                return
            await asyncio.sleep(0.05)
            os.kill(freeze_redis_pid, signal.SIGSTOP)
            await asyncio.sleep(2.0)
            os.kill(freeze_redis_pid, signal.SIGCONT)

        await asyncio.gather(freeze(), *(buyer(i, u) for i, u in enumerate(tokens)))
    return claims, outcomes


def test_200_buyers_for_20_tickets_get_exactly_20_holds_and_20_sales(stack, catalog, operator, db):
    _, tickets = new_event(catalog, operator, seats=20)
    tokens = {f"racer-{i:03d}": stack.token(f"racer-{i:03d}") for i in range(200)}
    claims, outcomes = asyncio.run(_race(stack.gateway, tokens, tickets))
    assert len(claims) == 20, outcomes
    assert not claimed_twice(claims)
    assert outcomes == {"OK": 20, "FAILED_PRECONDITION": 180}
    with grpc.insecure_channel(stack.gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)
        for user, ticket in claims:
            done = confirm(stub, stack, user, ticket)
            assert done.status == booking_pb2.BOOKING_STATUS_CONFIRMED
    assert sold_once(db, tickets) == dict.fromkeys(tickets, 1)


def test_control_the_same_race_without_the_guard_does_oversell(stack, catalog, operator, db):
    """The guard off: read the status, then write, with no condition on the write. The same
    detector flags the oversell, so the passing test above is not a test that cannot fail."""
    _, tickets = new_event(catalog, operator, seats=20)

    async def unguarded() -> list[tuple[str, str]]:
        claims = []

        async def buyer(i: int) -> None:
            ticket, user = tickets[i % 20], f"naive-{i}"
            async with await psycopg.AsyncConnection.connect(
                stack.database_url, autocommit=True
            ) as conn:
                cur = await conn.execute("SELECT status FROM tickets WHERE id = %s", (ticket,))
                if (await cur.fetchone())[0] == "available":
                    await asyncio.sleep(0.2)  # the time a real service spends between the two
                    await conn.execute(
                        "UPDATE tickets SET status = 'held', holder_user_id = %s,"
                        " hold_expire_time = now() + interval '10 minutes' WHERE id = %s",
                        (user, ticket),
                    )
                    claims.append((user, ticket))

        await asyncio.gather(*(buyer(i) for i in range(60)))
        return claims

    claims = asyncio.run(unguarded())
    assert len(claims) > 20
    assert claimed_twice(claims)


def test_redis_stopped_mid_race_never_oversells_and_recovers(stack, catalog, operator, db):
    _, tickets = new_event(catalog, operator, seats=20)
    components = read_stack(StateDir(stack.state_dir))["components"]
    redis_pid = next(c["pid"] for c in components if c["name"] == "redis")
    tokens = {f"frozen-{i:03d}": stack.token(f"frozen-{i:03d}") for i in range(200)}
    claims, outcomes = asyncio.run(_race(stack.gateway, tokens, tickets, redis_pid))
    assert not claimed_twice(claims)
    assert set(outcomes) <= {"OK", "FAILED_PRECONDITION", "UNAVAILABLE"}, outcomes
    held = db.execute(
        "SELECT count(*) FROM tickets WHERE id = ANY(%s::uuid[]) AND status = 'held'",
        (tickets,),
    ).fetchone()[0]
    assert held == len(claims) <= 20
    # Redis is back: a new reservation goes through the fast path again.
    _, fresh = new_event(catalog, operator, seats=2)
    with grpc.insecure_channel(stack.gateway) as channel:
        assert reserve(
            booking_pb2_grpc.BookingServiceStub(channel), stack, "after-thaw", fresh[0]
        ).ticket_ids == [fresh[0]]


def test_reserve_and_confirm_through_rest_with_the_seed_paths(stack, catalog, operator):
    _, tickets = new_event(catalog, operator, seats=2)
    token = stack.token("rest-buyer")
    status, _, held = rest(
        stack, "/booking/reserve", method="POST", body={"ticketId": tickets[0]}, token=token
    )
    assert status == 200 and held["state"] == "RESERVATION_STATE_HELD"
    assert held["total"] == {"currencyCode": "EUR", "amountMinor": "5000"}
    status, _, booked = rest(
        stack,
        "/booking/confirm",
        method="PUT",
        token=token,
        body={"ticketId": tickets[0], "paymentDetails": {"paymentMethodId": VISA}},
    )
    assert status == 200 and booked["status"] == "BOOKING_STATUS_CONFIRMED"
    assert booked["payment"]["providerPaymentId"].startswith("pi_")
    status, _, taken = rest(
        stack,
        "/booking/reserve",
        method="POST",
        body={"ticketId": tickets[0]},
        token=stack.token("late"),
    )
    assert status == 400 and taken["details"][0]["reason"] == "TICKET_UNAVAILABLE"
    status, _, _ = rest(stack, "/booking/reserve", method="POST", body={"ticketId": tickets[1]})
    assert status == 401


def test_retries_with_a_request_id_neither_double_hold_nor_double_charge(
    stack, catalog, operator, booking, db
):
    _, tickets = new_event(catalog, operator, seats=3)
    request_id = uuid.uuid4().hex
    first = reserve(booking, stack, "retrier", tickets[0], request_id=request_id)
    again = reserve(booking, stack, "retrier", tickets[0], request_id=request_id)
    assert first == again
    pay_id = uuid.uuid4().hex
    booked = confirm(booking, stack, "retrier", tickets[0], request_id=pay_id)
    replay = confirm(booking, stack, "retrier", tickets[0], request_id=pay_id)
    assert replay.id == booked.id
    assert replay.payment.provider_payment_id == booked.payment.provider_payment_id
    payments = db.execute(
        "SELECT count(*) FROM payments WHERE booking_id = %s", (booked.id,)
    ).fetchone()[0]
    assert payments == 1
    with pytest.raises(grpc.RpcError) as err:  # same request_id, different request
        reserve(booking, stack, "retrier", tickets[1], request_id=request_id)
    assert error_reason(err.value) == "REQUEST_ID_REUSED"


def _stripe(stack) -> stripe.StripeClient:
    return stripe.StripeClient(
        stripe_secrets(StateDir(stack.state_dir)).api_key,
        base_addresses={"api": stack.stripe_api_base},
    )


def _kept_charges(stack, user: str) -> list[str]:
    """The fake Stripe's succeeded PaymentIntents made for ``user`` (booking names the user in
    each one's metadata) that no refund gave back: what the buyer paid in the end."""
    client = _stripe(stack)
    paid = [
        intent["id"]
        for intent in (
            i.to_dict()
            for i in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter()
        )
        if (intent.get("metadata") or {}).get("user_id") == user and intent["status"] == "succeeded"
    ]
    refunded = {
        r.payment_intent for r in client.v1.refunds.list(params={"limit": 100}).auto_paging_iter()
    }
    return sorted(set(paid) - refunded)


async def _confirms_at_once(stack, user: str, ticket: str, request_ids: list[str]) -> list:
    """One confirm per request id, all sent at once (a buyer's two tabs); each answer is the
    booking or the error's reason."""
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)

        async def one(request_id: str):
            request = booking_pb2.ConfirmBookingRequest(
                ticket_id=ticket,
                payment_details=booking_pb2.PaymentDetails(payment_method_id=VISA),
                request_id=request_id,
            )
            try:
                return await stub.ConfirmBooking(request, metadata=auth(stack, user), timeout=60)
            except grpc.aio.AioRpcError as err:
                return error_reason(err)

        return list(await asyncio.gather(*(one(r) for r in request_ids)))


def test_two_confirms_of_one_hold_under_two_request_ids_keep_exactly_one_charge(
    stack, catalog, operator, booking, db
):
    """A buyer's two tabs confirm the same hold at once, each with its own request_id. The
    tickets' row locks put the two first phases (confirm_begin, migration 0017) one after the
    other: the second is refused before paying if the first has sold the seat (NOT_HOLDER), or
    pays for a booking of its own, which takes the seats over, so the first's sale finds them
    gone and its charge is refunded (PAYMENT_REFUNDED). Either way exactly one charge is kept,
    for the one booking sold, and each request_id replays its own first outcome without paying
    again. Several rounds, since which way a round goes depends on timing."""
    endings: dict[str, int] = {}
    for n in range(6):
        _, tickets = new_event(catalog, operator, seats=1)
        user = f"two-tabs-{n}-{uuid.uuid4().hex[:8]}"
        reserve(booking, stack, user, tickets[0])
        request_ids = [uuid.uuid4().hex, uuid.uuid4().hex]
        answers = asyncio.run(_confirms_at_once(stack, user, tickets[0], request_ids))
        sold = [a for a in answers if not isinstance(a, str)]
        refused = [a for a in answers if isinstance(a, str)]
        assert len(sold) == 1 and sold[0].status == booking_pb2.BOOKING_STATUS_CONFIRMED, answers
        assert len(refused) == 1 and refused[0] in {"NOT_HOLDER", "PAYMENT_REFUNDED"}, answers
        endings[refused[0]] = endings.get(refused[0], 0) + 1
        assert sold_once(db, tickets) == {tickets[0]: 1}
        kept = _kept_charges(stack, user)
        assert kept == [sold[0].payment.provider_payment_id]
        # Each request_id again: the sale replays as it was, the other is not charged again.
        winner = request_ids[answers.index(sold[0])]
        loser = request_ids[1 - answers.index(sold[0])]
        again = confirm(booking, stack, user, tickets[0], request_id=winner)
        assert (again.id, again.payment.provider_payment_id) == (
            sold[0].id,
            sold[0].payment.provider_payment_id,
        )
        try:
            replayed = confirm(booking, stack, user, tickets[0], request_id=loser)
            assert refused[0] == "PAYMENT_REFUNDED"
            assert replayed.status == booking_pb2.BOOKING_STATUS_REFUNDED
        except grpc.RpcError as err:
            assert error_reason(err) == refused[0] == "NOT_HOLDER"
        assert _kept_charges(stack, user) == kept
    print(f"6 rounds of two tabs: the second refused or refunded {endings}")


def test_control_two_payments_under_one_idempotency_key_are_both_kept_by_the_fake(stack):
    """The control of the test above: two confirms sharing one booking would send one
    idempotency key twice (the pre-0017 rule did, for two request ids), and only the provider's
    deduplication would then stop the second charge. The local fake has none, and the same
    detector sees both charges kept, so the test above can see a double charge."""
    user = f"one-key-{uuid.uuid4().hex[:8]}"
    client = _stripe(stack)
    for _ in range(2):
        client.v1.payment_intents.create(
            params={
                "amount": 5000,
                "currency": "eur",
                "payment_method": VISA,
                "confirm": True,
                "payment_method_types": ["card"],
                "metadata": {"booking_id": "shared", "user_id": user},
            },
            options={"idempotency_key": f"booking-shared-{VISA}-{user}"},
        )
    assert len(_kept_charges(stack, user)) == 2


def test_confirm_begin_and_sell_decide_two_request_ids_in_the_order_that_loses_money_otherwise(
    stack, catalog, operator, booking, db
):
    """migration 0017's functions called as booking calls them, in the interleaving the race
    above only sometimes produces: the first tab's payment attempt recorded, then the second
    tab's before the first has sold. The second gets a booking of its own (another idempotency
    key, so no provider can fold the two charges into one), the first's sale then sells nothing
    and writes nothing, the second's sells; a finished request_id is then replayed."""
    _, tickets = new_event(catalog, operator, seats=1)
    user = f"interleaved-{uuid.uuid4().hex[:8]}"
    reserve(booking, stack, user, tickets[0])
    with psycopg.connect(stack.database_url, user="ticketing_booking", autocommit=True) as conn:

        def begin(request_id):
            return conn.execute(
                "SELECT outcome, booking_id::text, payment_key, payment_status"
                " FROM confirm_begin(%s, %s::uuid[], %s, %s)",
                (user, [tickets[0]], request_id, VISA),
            ).fetchone()

        def sell(booking_id):
            return conn.execute(
                "SELECT sold, wanted, b_status FROM confirm_sell(%s)", (booking_id,)
            ).fetchone()

        first = begin("tab-1")
        assert first[0] == "PAYABLE" and first[3] == "requires_action"
        assert first[2] == f"booking-{first[1]}-{VISA}"  # domain.payment_idempotency_key
        assert begin("tab-1")[1:3] == first[1:3]  # a retry: the same booking and attempt
        second = begin("tab-2")
        assert second[0] == "PAYABLE" and second[1] != first[1] and second[2] != first[2]
        assert sell(first[1]) == (0, 1, "pending")  # the seats went to the second tab
        assert sell(second[1]) == (1, 1, "confirmed")
        assert sell(second[1]) == (1, 1, "confirmed")  # selling again changes nothing
        assert begin("tab-2")[:2] == ("FINISHED", second[1])
        assert begin("tab-3")[0] == "REFUSED"  # sold: not this user's hold any more
    assert sold_once(db, tickets) == {tickets[0]: 1}
    assert db.execute(
        "SELECT status, booking_id::text FROM tickets WHERE id = %s", (tickets[0],)
    ).fetchone() == ("booked", second[1])


def test_a_declined_card_keeps_the_hold_for_another_card(stack, catalog, operator, booking, db):
    _, tickets = new_event(catalog, operator, seats=1)
    reserve(booking, stack, "unlucky", tickets[0])
    with pytest.raises(grpc.RpcError) as err:
        confirm(booking, stack, "unlucky", tickets[0], method=DECLINING)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "PAYMENT_DECLINED"
    holder = db.execute(
        "SELECT status, holder_user_id FROM tickets WHERE id = %s", (tickets[0],)
    ).fetchone()
    assert holder == ("held", "unlucky")
    assert confirm(booking, stack, "unlucky", tickets[0]).status == (
        booking_pb2.BOOKING_STATUS_CONFIRMED
    )


def test_only_the_holder_confirms_and_bookings_are_private(stack, catalog, operator, booking):
    _, tickets = new_event(catalog, operator, seats=2)
    reserve(booking, stack, "anna", tickets[0])
    with pytest.raises(grpc.RpcError) as err:
        confirm(booking, stack, "bert", tickets[0])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) == "NOT_HOLDER"
    with pytest.raises(grpc.RpcError) as err:
        booking.CancelReservation(
            booking_pb2.CancelReservationRequest(ticket_id=tickets[0]), metadata=auth(stack, "bert")
        )
    assert error_reason(err.value) == "NOT_HOLDER"
    mine = confirm(booking, stack, "anna", tickets[0])
    with pytest.raises(grpc.RpcError) as err:
        booking.GetBooking(
            booking_pb2.GetBookingRequest(booking_id=mine.id), metadata=auth(stack, "bert")
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (
        booking.GetBooking(
            booking_pb2.GetBookingRequest(booking_id=mine.id), metadata=auth(stack, "anna")
        )
        == mine
    )
    listed = booking.ListBookings(booking_pb2.ListBookingsRequest(), metadata=auth(stack, "bert"))
    assert mine.id not in {b.id for b in listed.bookings}
    assert mine.id in {
        b.id
        for b in booking.ListBookings(
            booking_pb2.ListBookingsRequest(), metadata=auth(stack, "anna")
        ).bookings
    }


def test_per_user_cap_counts_holds_and_purchases(stack, catalog, operator, booking):
    _, tickets = new_event(catalog, operator, seats=5, max_tickets_per_user=2)
    with pytest.raises(grpc.RpcError) as err:
        reserve(booking, stack, "greedy", *tickets[:3])
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(err.value) == "LIMIT_EXCEEDED"
    reserve(booking, stack, "greedy", tickets[0])
    confirm(booking, stack, "greedy", tickets[0])
    reserve(booking, stack, "greedy", tickets[1])
    with pytest.raises(grpc.RpcError) as err:
        reserve(booking, stack, "greedy", tickets[2])
    assert error_reason(err.value) == "LIMIT_EXCEEDED"


def test_the_cap_counts_the_events_live_holds_only_and_a_hold_is_claimed_by_its_holder(
    stack, catalog, operator, booking, db
):
    """What hold_tickets reads since migration 0019 (the buyer's holds over all events, then
    this event's live ones; the order's seats by id): holds of another event and lapsed holds
    are not counted against the cap (control: this event's live holds are), a buyer's own
    live hold is theirs to reserve again, someone else's is not."""
    _, a = new_event(catalog, operator, seats=4, max_tickets_per_user=2)
    _, b = new_event(catalog, operator, seats=2, max_tickets_per_user=2)
    reserve(booking, stack, "roamer", b[0], b[1])  # another event's holds
    first = reserve(booking, stack, "roamer", a[0], a[1])
    again = reserve(booking, stack, "roamer", a[0], a[1])  # their own: kept, not doubled
    assert sorted(again.ticket_ids) == sorted(first.ticket_ids) == sorted(a[:2])
    with pytest.raises(grpc.RpcError) as err:  # the control: this event's live holds count
        reserve(booking, stack, "roamer", a[2])
    assert error_reason(err.value) == "LIMIT_EXCEEDED"
    with pytest.raises(grpc.RpcError) as err:
        reserve(booking, stack, "someone", a[0])
    assert error_reason(err.value) == "TICKET_UNAVAILABLE"
    db.execute(
        "UPDATE tickets SET hold_expire_time = now() - interval '1 second'"
        " WHERE id = ANY(%s::uuid[])",
        (a[:2],),
    )
    assert len(reserve(booking, stack, "roamer", a[2], a[3]).ticket_ids) == 2  # lapsed: not counted


def _held_by(db, user: str, ticket_ids: list[str]) -> int:
    return db.execute(
        "SELECT count(*) FROM tickets WHERE id = ANY(%s::uuid[]) AND status = 'held'"
        " AND holder_user_id = %s AND hold_expire_time > now()",
        (ticket_ids, user),
    ).fetchone()[0]


def test_one_users_orders_sent_at_once_never_beat_the_cap(stack, catalog, operator, db):
    """The cap is checked in Postgres after the user's lock is granted: eight one-seat orders
    of one user at once, with a cap of three, give exactly three holds."""
    _, tickets = new_event(catalog, operator, seats=8, max_tickets_per_user=3)
    metadata = auth(stack, "hoarder")

    async def race() -> list[str]:
        async with grpc.aio.insecure_channel(stack.gateway) as channel:
            stub = booking_pb2_grpc.BookingServiceStub(channel)

            async def order(ticket: str) -> str:
                try:
                    await stub.ReserveTicket(
                        booking_pb2.ReserveTicketRequest(ticket_id=ticket),
                        metadata=metadata,
                        timeout=30,
                    )
                except grpc.aio.AioRpcError as err:
                    return error_reason(err)
                return "OK"

            return await asyncio.gather(*(order(t) for t in tickets))

    outcomes = asyncio.run(race())
    assert sorted(outcomes) == ["LIMIT_EXCEEDED"] * 5 + ["OK"] * 3, outcomes
    assert _held_by(db, "hoarder", tickets) == 3


def test_control_the_cap_checked_without_the_users_lock_is_beaten(stack, catalog, operator, db):
    """The lock off: count the user's holds, then hold, with nothing serializing the orders.
    The same detector sees more than the cap, so the test above can fail."""
    _, tickets = new_event(catalog, operator, seats=8, max_tickets_per_user=3)

    async def unlocked() -> None:
        async def order(ticket: str) -> None:
            async with await psycopg.AsyncConnection.connect(
                stack.database_url, autocommit=True
            ) as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM tickets WHERE holder_user_id = 'hoarder-2'"
                    " AND status = 'held' AND hold_expire_time > now()"
                )
                if (await cur.fetchone())[0] + 1 <= 3:
                    await asyncio.sleep(0.2)  # the time a service spends between the two
                    await conn.execute(
                        "UPDATE tickets SET status = 'held', holder_user_id = 'hoarder-2',"
                        " hold_expire_time = now() + interval '10 minutes'"
                        " WHERE id = %s AND ticket_is_available(status, hold_expire_time)",
                        (ticket,),
                    )

        await asyncio.gather(*(order(t) for t in tickets))

    asyncio.run(unlocked())
    assert _held_by(db, "hoarder-2", tickets) > 3


def test_a_cancelled_hold_is_bookable_and_visible_again_at_once(stack, catalog, operator, booking):
    event_id, tickets = new_event(catalog, operator, seats=1)
    reserve(booking, stack, "changes-mind", tickets[0])
    cancelled = booking.CancelReservation(
        booking_pb2.CancelReservationRequest(ticket_id=tickets[0]),
        metadata=auth(stack, "changes-mind"),
    )
    assert cancelled.state == booking_pb2.RESERVATION_STATE_CANCELLED
    assert reserve(booking, stack, "next-in-line", tickets[0]).ticket_ids == [tickets[0]]
    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event_id))
    assert page.tickets[0].status == catalog_pb2.TICKET_STATUS_HELD


def _signed_webhook(stack, event_type: str, intent) -> tuple[bytes, str]:
    payload = json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:12]}",
            "object": "event",
            "type": event_type,
            "data": {"object": intent},
        }
    ).encode()
    secret = stripe_secrets(StateDir(stack.state_dir)).webhook_secret
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={stamp},v1={mac}"


def _post_webhook(stack, payload: bytes, signature: str) -> int:
    request = urllib.request.Request(
        f"http://{stack.gateway}/webhooks/stripe",
        data=payload,
        method="POST",
        headers={"content-type": "application/json", "stripe-signature": signature},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def _paid_elsewhere(stack, booking_id: str, amount: int):
    """A payment that succeeded at Stripe but whose client went away before confirming."""
    client = stripe.StripeClient(
        stripe_secrets(StateDir(stack.state_dir)).api_key,
        base_addresses={"api": stack.stripe_api_base},
    )
    intent = client.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "payment_method": VISA,
            "confirm": True,
            "payment_method_types": ["card"],
            "metadata": {"booking_id": booking_id},
        }
    )
    return client.v1.payment_intents.retrieve(intent.id).to_dict()


def lapse(stack, db, ticket_id: str) -> None:
    """What ten minutes do to a hold: it lapses in Postgres and its Redis lock expires."""
    db.execute(
        "UPDATE tickets SET hold_expire_time = now() - interval '1 second' WHERE id = %s",
        (ticket_id,),
    )
    with redis.Redis.from_url(stack.redis_url) as client:
        client.delete(lock_key(ticket_id))


def _pending_booking(db, user: str, ticket: str) -> str:
    return db.execute(
        "SELECT b.id::text FROM bookings b JOIN booking_tickets bt ON bt.booking_id = b.id"
        " WHERE b.user_id = %s AND bt.ticket_id = %s AND b.status = 'pending'",
        (user, ticket),
    ).fetchone()[0]


def test_a_webhook_confirms_a_booking_whose_client_went_away(stack, catalog, operator, booking, db):
    _, tickets = new_event(catalog, operator, seats=1)
    reserve(booking, stack, "gone", tickets[0])
    with pytest.raises(grpc.RpcError):  # leaves a pending booking behind, hold kept
        confirm(booking, stack, "gone", tickets[0], method=DECLINING)
    booking_id = _pending_booking(db, "gone", tickets[0])
    payload, signature = _signed_webhook(
        stack, "payment_intent.succeeded", _paid_elsewhere(stack, booking_id, 5000)
    )
    assert _post_webhook(stack, payload, "t=1,v1=" + "0" * 64) == 400
    assert _post_webhook(stack, payload, signature) == 200
    done = booking.GetBooking(
        booking_pb2.GetBookingRequest(booking_id=booking_id), metadata=auth(stack, "gone")
    )
    assert done.status == booking_pb2.BOOKING_STATUS_CONFIRMED
    assert sold_once(db, tickets) == {tickets[0]: 1}


def test_money_taken_for_a_lost_hold_is_refunded(stack, catalog, operator, booking, db):
    _, tickets = new_event(catalog, operator, seats=1)
    reserve(booking, stack, "slowpoke", tickets[0])
    with pytest.raises(grpc.RpcError):
        confirm(booking, stack, "slowpoke", tickets[0], method=DECLINING)
    booking_id = _pending_booking(db, "slowpoke", tickets[0])
    lapse(stack, db, tickets[0])  # the hold lapses ...
    reserve(booking, stack, "quick", tickets[0])  # ... and someone else takes the seat
    payload, signature = _signed_webhook(
        stack, "payment_intent.succeeded", _paid_elsewhere(stack, booking_id, 5000)
    )
    assert _post_webhook(stack, payload, signature) == 200
    refunded = booking.GetBooking(
        booking_pb2.GetBookingRequest(booking_id=booking_id), metadata=auth(stack, "slowpoke")
    )
    assert refunded.status == booking_pb2.BOOKING_STATUS_REFUNDED
    assert refunded.payment.refund_id.startswith("re_")
    holder = db.execute(
        "SELECT status, holder_user_id FROM tickets WHERE id = %s", (tickets[0],)
    ).fetchone()
    assert holder == ("held", "quick")
    with pytest.raises(grpc.RpcError) as err:  # and the buyer is told so on a retry
        confirm(booking, stack, "slowpoke", tickets[0])
    assert error_reason(err.value) in {"NOT_HOLDER", "PAYMENT_REFUNDED"}


def test_a_queue_enabled_event_needs_this_users_admission_for_this_event(
    stack, catalog, operator, booking
):
    queue = catalog_pb2.QueuePolicy(
        enabled=True, admission_rate_per_minute=60, max_active_users=10, admission_ttl_seconds=600
    )
    event_id, tickets = new_event(catalog, operator, seats=3, queue_policy=queue)
    other_event, _ = new_event(catalog, operator, seats=1, queue_policy=queue)
    key = admission_key(StateDir(stack.state_dir))
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    refused = {
        "no admission": "",
        "another user's": admission.sign(
            key, user_id="someone", event_id=event_id, expire_time=soon
        ),
        "another event's": admission.sign(
            key, user_id="queued", event_id=other_event, expire_time=soon
        ),
        "an expired one": admission.sign(
            key,
            user_id="queued",
            event_id=event_id,
            expire_time=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        ),
        "a forged one": admission.sign(
            "f" * 64, user_id="queued", event_id=event_id, expire_time=soon
        ),
    }
    for case, token in refused.items():
        with pytest.raises(grpc.RpcError) as err:
            reserve(booking, stack, "queued", tickets[0], admission_token=token)
        assert error_reason(err.value) == "NOT_ADMITTED", case
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    valid = admission.sign(key, user_id="queued", event_id=event_id, expire_time=soon)
    assert reserve(booking, stack, "queued", tickets[0], admission_token=valid).ticket_ids


@pytest.fixture(scope="module")
def short_hold_stack():
    """A stack of its own whose holds last 2 seconds instead of 10 minutes."""
    state = new_state_dir("ticketing-short-hold-")
    os.environ["TICKETING_HOLD_SECONDS"] = "2"
    try:
        running = start_stack(state, pick_port_layout(), demo_data="none")
    finally:
        del os.environ["TICKETING_HOLD_SECONDS"]
    yield running
    ticketing(state, "down", timeout=120)
    shutil.rmtree(state, ignore_errors=True)


def test_a_lapsed_hold_cannot_be_confirmed_and_is_bookable_again(short_hold_stack):
    stack = short_hold_stack
    operator = (("authorization", f"Bearer {stack.token('ops', role='operator')}"),)
    with grpc.insecure_channel(stack.gateway) as channel:
        catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        booking = booking_pb2_grpc.BookingServiceStub(channel)
        event_id, tickets = new_event(catalog, operator, seats=1)
        held = reserve(booking, stack, "dawdler", tickets[0])
        assert held.expire_time.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC) < dt.timedelta(
            seconds=3
        )
        time.sleep(2.5)
        with pytest.raises(grpc.RpcError) as err:
            confirm(booking, stack, "dawdler", tickets[0])
        assert error_reason(err.value) == "HOLD_EXPIRED"
        page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event_id))
        assert page.tickets[0].status == catalog_pb2.TICKET_STATUS_AVAILABLE
        assert reserve(booking, stack, "punctual", tickets[0]).ticket_ids == [tickets[0]]
        assert confirm(booking, stack, "punctual", tickets[0]).status == (
            booking_pb2.BOOKING_STATUS_CONFIRMED
        )


def test_a_lock_left_by_a_reserve_that_died_lapses_in_seconds(stack, catalog, operator, booking):
    """A reservation's Redis locks are taken for seconds and stretched to the hold's ten
    minutes only once Postgres has held the seats: a booking process killed in between does
    not leave seats nobody can buy for ten minutes while Postgres says they are free."""
    import asyncio

    from booking_svc.adapters.holds import PENDING_MS, HoldLocks
    from ticketing_common.redis_client import open_redis

    _, tickets = new_event(catalog, operator, seats=2)

    async def ghost() -> None:  # what a process that died after its lock leaves behind
        client = open_redis(stack.redis_url, timeout_seconds=5)
        try:
            await HoldLocks(client, 600_000).take("ghost", [tickets[0]])
        finally:
            await client.aclose()

    asyncio.run(ghost())
    reserve(booking, stack, "lock-alive", tickets[1])
    with redis.Redis.from_url(stack.redis_url) as client:
        orphan, held = client.pttl(lock_key(tickets[0])), client.pttl(lock_key(tickets[1]))
        client.delete(lock_key(tickets[0]))
    print(f"an orphaned lock lapses in {orphan} ms; a held seat's lock in {held} ms")
    assert 0 < orphan <= PENDING_MS
    assert held > 9 * 60 * 1000  # the hold's ten minutes
