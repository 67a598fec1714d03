"""BookingService/ReserveBestAvailable: the platform picks adjacent seats in one row, through
the gateway as a client calls it (native gRPC and REST), and Postgres decides (issue 12)."""

import asyncio
import datetime as dt
import time
import uuid

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2

from deploy.stack.state import StateDir, admission_key
from tests.helpers import error_reason, make_event, make_venue, rest, ts
from tests.integration.test_metrics import BOOKING, eventually, sample, scrape
from ticketing_common import admission

pytestmark = pytest.mark.integration

TIERS = {"premium": 15000, "standard": 6000}
Seat = tuple[str, str, int]  # section, row, seat number

_day = iter(range(900, 1200, 3))


def auth(stack, user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.token(user)}"),)


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-bestseat', role='operator')}"),)


@pytest.fixture(scope="module")
def booking(channel):
    return booking_pb2_grpc.BookingServiceStub(channel)


def new_event(catalog, operator, *, sections: int, rows: int, seats: int, **fields) -> str:
    """An on-sale event at a fresh venue: section S00 is "premium", the others "standard"."""
    venue = make_venue(catalog, operator, sections=sections, rows=rows, seats=seats)
    return make_event(catalog, operator, venue.id, days_ahead=next(_day), tiers=TIERS, **fields).id


def best(booking, stack, user: str, event_id: str, quantity: int, **extra):
    request = booking_pb2.ReserveBestAvailableRequest(event_id=event_id, quantity=quantity, **extra)
    return booking.ReserveBestAvailable(request, metadata=auth(stack, user))


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(err).details[0].Unpack(info)
    return info


def seats_of(db, ticket_ids) -> list[Seat]:
    rows = db.execute(
        "SELECT section, row_label, seat_label::int FROM tickets WHERE id = ANY(%s::uuid[])"
        " ORDER BY section, row_label, seat_label::int",
        (list(ticket_ids),),
    ).fetchall()
    return [tuple(r) for r in rows]


def party_violations(parties: dict[str, list[Seat]], size: int) -> list[str]:
    """What is wrong with the seated parties: a party not of ``size`` seats side by side in one
    row, or a seat given to more than one party. Empty when all is well."""
    problems, owner = [], {}
    for party, seats in parties.items():
        ordered = sorted(seats)
        if len(ordered) != size or len({(s, r) for s, r, _ in ordered}) != 1:
            problems.append(f"{party}: not {size} seats in one row: {ordered}")
        elif [n for _, _, n in ordered] != list(range(ordered[0][2], ordered[0][2] + size)):
            problems.append(f"{party}: seats not adjacent: {ordered}")
        for seat in ordered:
            if seat in owner and owner[seat] != party:
                problems.append(f"{seat} given to {owner[seat]} and {party}")
            owner[seat] = party
    return problems


# -- the race ------------------------------------------------------------------------------


async def _best_race(
    gateway: str, tokens: dict[str, str], event_id: str, quantity: int
) -> tuple[dict[str, list[str]], dict[str, int], float]:
    """Every buyer asks for ``quantity`` best-available seats at once; returns each seated
    buyer's tickets, the count of each answer (status or reason), and the seconds it took."""
    parties: dict[str, list[str]] = {}
    outcomes: dict[str, int] = {}
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = booking_pb2_grpc.BookingServiceStub(channel)

        async def buyer(user: str) -> None:
            try:
                held = await stub.ReserveBestAvailable(
                    booking_pb2.ReserveBestAvailableRequest(event_id=event_id, quantity=quantity),
                    metadata=(("authorization", f"Bearer {tokens[user]}"),),
                    timeout=60,
                )
                parties[user] = list(held.ticket_ids)
                answer = "OK"
            except grpc.aio.AioRpcError as err:
                info = error_details_pb2.ErrorInfo()
                status = rpc_status.from_call(err)
                if status is not None and status.details:
                    status.details[0].Unpack(info)
                answer = info.reason or err.code().name
            outcomes[answer] = outcomes.get(answer, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(buyer(u) for u in tokens))
        took = time.perf_counter() - started
    return parties, outcomes, took


def test_300_parties_of_two_for_400_seats_seat_exactly_200_side_by_side(
    stack, catalog, operator, db
):
    event_id = new_event(catalog, operator, sections=4, rows=10, seats=10)
    tokens = {f"pair-{i:03d}": stack.token(f"pair-{i:03d}") for i in range(300)}
    parties, outcomes, took = asyncio.run(_best_race(stack.gateway, tokens, event_id, 2))
    print(
        f"\nbest-available race: {len(parties)} parties of 2 seated in {took:.2f} s "
        f"({len(parties) / took:.0f} parties/s, 300 buyers); answers {outcomes}"
    )
    assert len(parties) == 200, outcomes
    assert set(outcomes) <= {"OK", "NO_ADJACENT_SEATS", "TICKET_UNAVAILABLE"}, outcomes
    # What the buyers were told...
    told = {user: seats_of(db, ids) for user, ids in parties.items()}
    assert party_violations(told, 2) == []
    # ... is what Postgres holds: every seat of the event held once, by the buyer told so.
    held = db.execute(
        "SELECT id::text, holder_user_id, status, hold_expire_time > now() FROM tickets"
        " WHERE event_id = %s",
        (event_id,),
    ).fetchall()
    assert len(held) == 400
    holder = {ticket: user for ticket, user, _, _ in held}
    assert all(status == "held" and live for _, _, status, live in held)
    assert {t: u for u, ids in parties.items() for t in ids} == holder
    # Nothing is left, and a late buyer hears why.
    with grpc.insecure_channel(stack.gateway) as channel:
        with pytest.raises(grpc.RpcError) as err:
            best(booking_pb2_grpc.BookingServiceStub(channel), stack, "late", event_id, 2)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(err.value).reason == "NO_ADJACENT_SEATS"
    assert error_info(err.value).metadata["seats_remaining"] == "0"


def test_control_the_party_checker_sees_split_and_shared_seats():
    """The checker the race relies on is not one that cannot fail."""
    good = {"a": [("S00", "1", 1), ("S00", "1", 2)], "b": [("S00", "1", 3), ("S00", "1", 4)]}
    assert party_violations(good, 2) == []
    split = {"a": [("S00", "1", 1), ("S00", "1", 3)]}
    assert "not adjacent" in party_violations(split, 2)[0]
    two_rows = {"a": [("S00", "1", 1), ("S00", "2", 2)]}
    assert "one row" in party_violations(two_rows, 2)[0]
    shared = {"a": [("S00", "1", 1), ("S00", "1", 2)], "b": [("S00", "1", 2), ("S00", "1", 3)]}
    assert any("given to a and b" in p for p in party_violations(shared, 2))


def test_control_picking_without_the_lock_seats_parties_on_the_same_seats(
    stack, catalog, operator, db
):
    """The guard off: read the best free pair, then write it, with no lock and no condition.
    The same checker flags the overlap, so the race above can see one."""
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=10)

    async def naive() -> dict[str, list[Seat]]:
        parties: dict[str, list[Seat]] = {}

        async def buyer(i: int) -> None:
            user = f"naive-pair-{i}"
            async with await psycopg.AsyncConnection.connect(
                stack.database_url, autocommit=True
            ) as conn:
                cur = await conn.execute(
                    "SELECT id, section, row_label, seat_label::int FROM tickets"
                    " WHERE event_id = %s AND status = 'available'"
                    " ORDER BY row_label, seat_label::int LIMIT 2",
                    (event_id,),
                )
                pair = await cur.fetchall()
                await asyncio.sleep(0.2)  # the time a real service spends between the two
                await conn.execute(
                    "UPDATE tickets SET status = 'held', holder_user_id = %s,"
                    " hold_expire_time = now() + interval '10 minutes' WHERE id = ANY(%s)",
                    (user, [p[0] for p in pair]),
                )
                parties[user] = [(s, r, n) for _, s, r, n in pair]

        await asyncio.gather(*(buyer(i) for i in range(20)))
        return parties

    assert any("given to" in p for p in party_violations(asyncio.run(naive()), 2))


# -- which seats ---------------------------------------------------------------------------


def test_best_section_first_then_front_row_then_lowest_seats_and_preferences(
    stack, catalog, operator, booking, db
):
    event_id = new_event(catalog, operator, sections=3, rows=2, seats=4)
    first = best(booking, stack, "pref-a", event_id, 2)
    assert seats_of(db, first.ticket_ids) == [("S00", "1", 1), ("S00", "1", 2)]
    assert first.state == booking_pb2.RESERVATION_STATE_HELD
    assert first.total.amount_minor == 2 * TIERS["premium"]
    assert first.user_id == "pref-a" and first.event_id == event_id
    # Three do not fit beside the first party in row 1 (two seats left): row 2 of S00.
    three = best(booking, stack, "pref-b", event_id, 3)
    assert seats_of(db, three.ticket_ids) == [("S00", "2", 1), ("S00", "2", 2), ("S00", "2", 3)]
    # A price tier: the best section of that tier.
    standard = best(booking, stack, "pref-c", event_id, 2, price_tier="standard")
    assert seats_of(db, standard.ticket_ids) == [("S01", "1", 1), ("S01", "1", 2)]
    assert standard.total.amount_minor == 2 * TIERS["standard"]
    # A section: seats from there.
    named = best(booking, stack, "pref-d", event_id, 4, section="S02")
    assert seats_of(db, named.ticket_ids) == [("S02", "1", n) for n in range(1, 5)]
    both = best(booking, stack, "pref-e", event_id, 1, price_tier="standard", section="S02")
    assert seats_of(db, both.ticket_ids) == [("S02", "2", 1)]


def test_no_adjacent_block_left_says_how_many_single_seats_remain(
    stack, catalog, operator, booking, db
):
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=3)
    best(booking, stack, "gap-a", event_id, 2)  # row 1: 1, 2
    best(booking, stack, "gap-b", event_id, 2)  # row 2: 1, 2
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "gap-c", event_id, 2)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(err.value)
    assert info.reason == "NO_ADJACENT_SEATS"
    assert info.metadata["seats_remaining"] == "2"
    # Nothing was held for the refused party; a single seat is still there for one.
    assert db.execute("SELECT count(*) FROM tickets WHERE holder_user_id = 'gap-c'").fetchone() == (
        0,
    )
    assert len(best(booking, stack, "gap-c", event_id, 1).ticket_ids) == 1


# -- the guarantees of ReserveTicket -------------------------------------------------------


def test_bad_input_is_invalid_argument_naming_the_field(stack, catalog, operator, booking):
    event_id = new_event(catalog, operator, sections=2, rows=1, seats=6, max_tickets_per_user=4)
    cases = {
        "quantity 0": ({"quantity": 0}, "quantity"),
        "quantity negative": ({"quantity": -2}, "quantity"),
        "over the event's cap": ({"quantity": 5}, "quantity"),
        "over any order's size": ({"quantity": 11}, "quantity"),
        "unknown tier": ({"quantity": 2, "price_tier": "gold"}, "price_tier"),
        "unknown section": ({"quantity": 2, "section": "Z9"}, "section"),
        "section of another tier": (
            {"quantity": 2, "section": "S00", "price_tier": "standard"},
            "section",
        ),
        "malformed event id": ({"quantity": 2, "event_id": "not-a-uuid"}, "event_id"),
    }
    for case, (fields, field) in cases.items():
        request = booking_pb2.ReserveBestAvailableRequest(**{"event_id": event_id, **fields})
        with pytest.raises(grpc.RpcError) as err:
            booking.ReserveBestAvailable(request, metadata=auth(stack, "bad-input"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, err.value.details())
        assert error_info(err.value).metadata["field"] == field, case
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "bad-input", str(uuid.uuid4()), 2)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(err.value) == "EVENT_NOT_FOUND"


def _event_with_a_standing_floor(catalog, operator) -> str:
    """An on-sale event whose venue has a standing floor (6 places) before a seated row of 4."""
    venue = catalog_pb2.Venue(
        name=f"Test Club {uuid.uuid4().hex[:6]}",
        city="Lisbon",
        country_code="PT",
        location=common_pb2.GeoPoint(latitude=38.72, longitude=-9.14),
        seat_map=catalog_pb2.SeatMap(
            sections=[
                catalog_pb2.Section(name="Floor", price_tier="standard", standing_capacity=6),
                catalog_pb2.Section(
                    name="S00",
                    price_tier="premium",
                    rows=[catalog_pb2.Row(label="1", seat_count=4)],
                ),
            ]
        ),
    )
    created = catalog.CreateVenue(catalog_pb2.CreateVenueRequest(venue=venue), metadata=operator)
    return make_event(catalog, operator, created.id, days_ahead=next(_day), tiers=TIERS).id


def test_a_standing_section_on_a_seated_only_order_is_invalid_argument(
    stack, catalog, operator, booking, db
):
    """seated_only names the order's wish for numbered seats: naming a standing section is
    INVALID_ARGUMENT on field "section" (400 through REST), nothing held; without a section
    the standing floor (first in the venue's order) is passed over for the seated row."""
    event_id = _event_with_a_standing_floor(catalog, operator)
    request = booking_pb2.ReserveBestAvailableRequest(
        event_id=event_id, quantity=2, section="Floor", seated_only=True
    )
    with pytest.raises(grpc.RpcError) as err:
        booking.ReserveBestAvailable(request, metadata=auth(stack, "seated-only"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert error_reason(err.value) == "INVALID_ARGUMENT"
    assert error_info(err.value).metadata["field"] == "section"
    print(f"\nseated-only order naming the floor: {err.value.details()}")
    status, _, refused = rest(
        stack,
        "/booking/reserve-best",
        method="POST",
        body={"eventId": event_id, "quantity": 2, "section": "Floor", "seatedOnly": True},
        token=stack.token("seated-only"),
    )
    assert status == 400, refused
    assert refused["details"][0]["reason"] == "INVALID_ARGUMENT"
    assert refused["details"][0]["metadata"]["field"] == "section"
    held = db.execute(
        "SELECT count(*) FROM tickets WHERE event_id = %s AND holder_user_id = 'seated-only'",
        (event_id,),
    ).fetchone()
    assert held == (0,)
    # The same order without the wish stands on the floor; with it, sits in the row.
    standing = best(booking, stack, "standing-ok", event_id, 2, section="Floor")
    assert {s[0] for s in seats_of(db, standing.ticket_ids)} == {"Floor"}
    seated = best(booking, stack, "seated-ok", event_id, 2, seated_only=True)
    assert seats_of(db, seated.ticket_ids) == [("S00", "1", 1), ("S00", "1", 2)]
    # Only 2 single seats are left in the row: a seated party of 3 is told so, the floor's
    # 4 free places not counted.
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "seated-three", event_id, 3, seated_only=True)
    assert error_reason(err.value) == "NO_ADJACENT_SEATS"
    assert error_info(err.value).metadata["seats_remaining"] == "2"


def test_the_per_user_cap_counts_earlier_holds(stack, catalog, operator, booking):
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=6, max_tickets_per_user=4)
    best(booking, stack, "capped", event_id, 3)
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "capped", event_id, 2)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(err.value) == "LIMIT_EXCEEDED"
    assert len(best(booking, stack, "capped", event_id, 1).ticket_ids) == 1


def test_a_sale_not_open_and_a_queue_without_admission_are_refused(
    stack, catalog, operator, booking
):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    not_open = new_event(catalog, operator, sections=1, rows=1, seats=4, on_sale_time=ts(later))
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "early", not_open, 2)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(err.value) == "SALE_NOT_OPEN"
    queue = catalog_pb2.QueuePolicy(
        enabled=True, admission_rate_per_minute=60, max_active_users=10, admission_ttl_seconds=600
    )
    queued = new_event(catalog, operator, sections=1, rows=1, seats=4, queue_policy=queue)
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "queuer", queued, 2)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) == "NOT_ADMITTED"
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    token = admission.sign(
        admission_key(StateDir(stack.state_dir)),
        user_id="queuer",
        event_id=queued,
        expire_time=soon,
    )
    assert len(best(booking, stack, "queuer", queued, 2, admission_token=token).ticket_ids) == 2


def test_a_retry_with_the_same_request_id_returns_the_same_seats(
    stack, catalog, operator, booking, db
):
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=6)
    request_id = uuid.uuid4().hex
    first = best(booking, stack, "replayer", event_id, 2, request_id=request_id)
    again = best(booking, stack, "replayer", event_id, 2, request_id=request_id)
    assert again == first
    assert db.execute(
        "SELECT count(*) FROM tickets WHERE holder_user_id = 'replayer' AND event_id = %s",
        (event_id,),
    ).fetchone() == (2,)
    with pytest.raises(grpc.RpcError) as err:  # same request_id, another request
        best(booking, stack, "replayer", event_id, 3, request_id=request_id)
    assert error_reason(err.value) == "REQUEST_ID_REUSED"
    other = best(booking, stack, "replayer", event_id, 2, request_id=uuid.uuid4().hex)
    assert set(other.ticket_ids).isdisjoint(first.ticket_ids)


def test_rest_through_the_gateway(stack, catalog, operator, db):
    event_id = new_event(catalog, operator, sections=2, rows=1, seats=4)
    token = stack.token("rest-best")
    status, _, held = rest(
        stack,
        "/booking/reserve-best",
        method="POST",
        body={"eventId": event_id, "quantity": 2, "priceTier": "standard"},
        token=token,
    )
    assert status == 200, held
    assert held["state"] == "RESERVATION_STATE_HELD" and held["userId"] == "rest-best"
    assert seats_of(db, held["ticketIds"]) == [("S01", "1", 1), ("S01", "1", 2)]
    status, _, refused = rest(
        stack,
        "/booking/reserve-best",
        method="POST",
        body={"eventId": event_id, "quantity": 0},
        token=token,
    )
    assert status == 400
    assert refused["details"][0]["reason"] == "INVALID_ARGUMENT"
    assert refused["details"][0]["metadata"]["field"] == "quantity"
    status, _, refused = rest(
        stack,
        "/booking/reserve-best",
        method="POST",
        body={"eventId": event_id, "quantity": 3, "section": "S01"},
        token=token,
    )
    assert status == 400 and refused["details"][0]["reason"] == "NO_ADJACENT_SEATS"
    assert refused["details"][0]["metadata"]["seats_remaining"] == "2"
    status, _, _ = rest(
        stack, "/booking/reserve-best", method="POST", body={"eventId": event_id, "quantity": 1}
    )
    assert status == 401  # like /booking/reserve: a token is required


def test_seats_whose_hold_lapsed_are_picked_again(stack, catalog, operator, booking, db):
    event_id = new_event(catalog, operator, sections=1, rows=1, seats=2)
    first = best(booking, stack, "lapse-a", event_id, 2)
    with pytest.raises(grpc.RpcError) as err:
        best(booking, stack, "lapse-b", event_id, 2)
    assert error_reason(err.value) == "NO_ADJACENT_SEATS"
    # The hold runs out (status stays 'held': expiry is implicit, nobody writes).
    db.execute(
        "UPDATE tickets SET hold_expire_time = now() - interval '1 second'"
        " WHERE id = ANY(%s::uuid[])",
        (list(first.ticket_ids),),
    )
    again = best(booking, stack, "lapse-b", event_id, 2)
    assert sorted(again.ticket_ids) == sorted(first.ticket_ids)
    assert again.user_id == "lapse-b"


def test_best_available_holds_are_counted_by_outcome(stack, catalog, operator, booking):
    event_id = new_event(catalog, operator, sections=1, rows=1, seats=3)
    rpc = {"grpc_service": BOOKING, "grpc_method": "ReserveBestAvailable"}
    before = scrape(stack, "booking")
    best(booking, stack, "metered-a", event_id, 2)
    with pytest.raises(grpc.RpcError):
        best(booking, stack, "metered-b", event_id, 2)

    def counted() -> bool:
        text = scrape(stack, "booking")
        done = sample(text, "grpc_server_handling_seconds_count", **rpc)
        return done - sample(before, "grpc_server_handling_seconds_count", **rpc) >= 2

    eventually(counted)
    after = scrape(stack, "booking")

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("grpc_server_handled_total", grpc_code="OK", **rpc) == 1
    assert delta("grpc_server_handled_total", grpc_code="FAILED_PRECONDITION", **rpc) == 1
    assert delta("ticketing_best_available_total", event_id=event_id, outcome="TAKEN") == 1
    assert (
        delta("ticketing_best_available_total", event_id=event_id, outcome="NO_ADJACENT_SEATS") == 1
    )
    assert delta("ticketing_holds_total", event_id=event_id, outcome="TAKEN") == 1
    assert delta("ticketing_tickets_held_total", event_id=event_id) == 2


def test_one_users_orders_sent_at_once_never_beat_the_cap(stack, catalog, operator, db):
    """Six orders of two seats from one user at once, with a cap of four: exactly two held."""
    event_id = new_event(catalog, operator, sections=1, rows=4, seats=10, max_tickets_per_user=4)
    token = {"greedy-pairs": stack.token("greedy-pairs")}

    async def orders() -> list[str]:
        answers = await asyncio.gather(
            *(_best_race(stack.gateway, token, event_id, 2) for _ in range(6))
        )
        return [a for _, outcomes, _ in answers for a in outcomes]

    answers = asyncio.run(orders())
    assert sorted(answers) == ["LIMIT_EXCEEDED"] * 4 + ["OK"] * 2, answers
    assert db.execute(
        "SELECT count(*) FROM tickets WHERE event_id = %s AND holder_user_id = 'greedy-pairs'",
        (event_id,),
    ).fetchone() == (4,)
