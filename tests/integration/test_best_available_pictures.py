"""Best available proposed by booking processes, decided by Postgres (issue 12): two booking
processes' seat pictures (each its own pool, repository and ``PictureBook``, as two processes
have) race for one event against the real Postgres, with single-seat buyers taking seats
under them, and every party is seated once, side by side, as Postgres holds it.

The same checker sees two pictures hand out the same seats when nobody asks Postgres (the
control), and the proposed-block statement (migration 0018) is shown refusing a buyer's own
seats, which the single-seat function would hand back to them as if new."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import uuid
from typing import Any

import grpc
import pytest
from psycopg_pool import AsyncConnectionPool
from ticketing.booking.v1 import booking_pb2, booking_pb2_grpc

from booking_svc.adapters.postgres import BookingRepository
from booking_svc.best_available import PictureBook, hold_best
from booking_svc.domain import BestDecision, BestSeatsOrder, HoldOutcome
from booking_svc.seat_picture import Side
from tests.helpers import make_event, make_venue
from tests.integration.test_best_available import party_violations, seats_of
from tests.integration.test_hold_batches import url_as
from tests.integration.test_metrics import eventually, sample, scrape
from ticketing_common.db import open_pool

pytestmark = pytest.mark.integration

HOLD = dt.timedelta(minutes=10)
PEOPLE = f"pictures-{uuid.uuid4().hex[:8]}"
_day = iter(range(1200, 1300, 3))


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-pictures', role='operator')}"),)


def new_event(catalog, operator, *, sections: int, rows: int, seats: int) -> str:
    venue = make_venue(catalog, operator, sections=sections, rows=rows, seats=seats)
    return make_event(catalog, operator, venue.id, days_ahead=next(_day)).id


class Counting(BookingRepository):
    """The booking adapter, counting the orders the exact function seated."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        super().__init__(pool)
        self.exact = 0

    async def hold_best_available(self, *args: Any, **kwargs: Any) -> BestDecision:
        best = await super().hold_best_available(*args, **kwargs)
        self.exact += best.decision.outcome is HoldOutcome.HELD
        return best


async def _processes(stack, n: int = 2) -> list[tuple[AsyncConnectionPool, Counting, PictureBook]]:
    made = []
    for side in (Side.LEFT, Side.RIGHT)[:n]:
        pool = await open_pool(url_as(stack, "ticketing_booking"), max_size=4, name="test-pictures")
        await pool.wait(timeout=30)
        repo = Counting(pool)
        book = PictureBook(repo, refresh_seconds=60)
        book._side = side  # the lanes two processes take from Redis: one odd, one even
        made.append((pool, repo, book))
    return made


def test_two_processes_pictures_race_for_one_event_and_postgres_seats_each_pair_once(
    stack, catalog, operator, db
):
    """2 processes, 260 buyers of 2 seats and 40 single-seat buyers at once for 400 seats
    (2 sections x 10 rows x 20): every seat held once, by whom Postgres says; every party of
    the best-available buyers side by side in one row; most of them held from proposals."""
    event_id = new_event(catalog, operator, sections=2, rows=10, seats=20)
    tickets = [
        r[0] for r in db.execute("SELECT id::text FROM tickets WHERE event_id = %s", (event_id,))
    ]
    rng = random.Random(12)
    singles = rng.sample(tickets, 40)

    async def main() -> tuple[dict[str, list[str]], dict[str, int], dict[str, list[str]], int]:
        procs = await _processes(stack)
        try:
            # Each process has read its picture before the sale: both believe all is free.
            for _, _, book in procs:
                await book.get(event_id)
            parties: dict[str, list[str]] = {}
            outcomes: dict[str, int] = {}
            single_held: dict[str, list[str]] = {}

            async def pair(i: int) -> None:
                _, repo, book = procs[i % 2]
                user = f"{PEOPLE}-pair-{i}"
                best = await hold_best(
                    repo, book, user, BestSeatsOrder(event_id, 2, None, None), HOLD, None
                )
                outcome = best.decision.outcome.value
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                if best.decision.outcome is HoldOutcome.HELD:
                    parties[user] = [h.ticket_id for h in best.decision.holds]

            async def single(i: int, ticket: str) -> None:
                _, repo, _ = procs[i % 2]
                user = f"{PEOPLE}-single-{i}"
                decision = await repo.hold_tickets(user, [ticket], HOLD, None)
                if decision.outcome is HoldOutcome.HELD:
                    single_held[user] = [ticket]

            # The singles first: their seats are taken under pictures that believe them free.
            await asyncio.gather(
                *(single(i, t) for i, t in enumerate(singles)),
                *(pair(i) for i in range(260)),
            )
            return parties, outcomes, single_held, sum(repo.exact for _, repo, _ in procs)
        finally:
            for pool, _, _ in procs:
                await pool.close()

    parties, outcomes, single_held, exact = asyncio.run(main())
    print(
        f"\npictures race: {len(parties)} parties, {len(single_held)} singles, answers "
        f"{outcomes}, {exact} seated by hold_best_available"
    )
    assert set(outcomes) <= {"HELD", "NO_ADJACENT_SEATS", "TICKET_UNAVAILABLE"}, outcomes
    told = {u: seats_of(db, ids) for u, ids in parties.items()}
    assert party_violations(told, 2) == []
    everyone = parties | single_held
    owners = [t for ids in everyone.values() for t in ids]
    assert len(owners) == len(set(owners)), "a seat told to two buyers"
    held = dict(
        db.execute(
            "SELECT id::text, holder_user_id FROM tickets WHERE event_id = %s AND status = 'held'",
            (event_id,),
        ).fetchall()
    )
    assert held == {t: u for u, ids in everyone.items() for t in ids}
    # 40 singles in 20 rows cut them into at most 60 runs, each wasting at most one seat...
    assert len(parties) >= (400 - 40 - 60) // 2
    # ...and pairs were refused only once no two free seats stood side by side (unless one
    # was refused while others' locks were on the last free pairs).
    free = db.execute(
        "SELECT section, row_label, seat_label::int FROM tickets WHERE event_id = %s"
        " AND status = 'available' ORDER BY 1, 2, 3",
        (event_id,),
    ).fetchall()
    if "TICKET_UNAVAILABLE" not in outcomes:
        assert not any(a[:2] == b[:2] and b[2] == a[2] + 1 for a, b in itertools.pairwise(free)), (
            "a pair refused while two seats side by side were free"
        )
    assert exact < len(parties) // 4, "most parties should come from proposals"


def test_control_two_pictures_without_postgres_hand_out_the_same_seats(
    stack, catalog, operator, db
):
    """The guard off: take each process's proposals as held without asking Postgres. The same
    checker sees seats given to two parties, so the race above can see one."""
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=10)

    async def main() -> dict[str, list[str]]:
        procs = await _processes(stack)
        try:
            parties = {}
            for i in range(10):
                _, _, book = procs[i % 2]
                picture = await book.get(event_id)
                proposal = picture.propose(BestSeatsOrder(event_id, 2, None, None))
                parties[f"naive-{i}"] = list(proposal.ticket_ids)
            return parties
        finally:
            for pool, _, _ in procs:
                await pool.close()

    told = {u: seats_of(db, ids) for u, ids in asyncio.run(main()).items()}
    assert any("given to" in p for p in party_violations(told, 2))


def test_a_proposed_block_with_the_buyers_own_seat_is_refused_not_handed_back(
    stack, catalog, operator, db
):
    """A process whose picture missed the buyer's own hold (made in another process) proposes
    those seats: the proposed-block statement refuses them and writes nothing, and the buyer
    gets other seats. Control: the single-seat statement says HELD to the same seats."""
    event_id = new_event(catalog, operator, sections=1, rows=1, seats=6)
    user = f"{PEOPLE}-own"

    async def main() -> tuple[Any, Any, BestDecision]:
        procs = await _processes(stack, 1)
        (pool, repo, book) = procs[0]
        try:
            await book.get(event_id)  # read while all six are free
            first = await repo.hold_best_available(
                user, BestSeatsOrder(event_id, 2, None, None), HOLD, None
            )
            own = [h.ticket_id for h in first.decision.holds]
            refused = await repo.hold_picked(user, own, HOLD, None)
            again = await repo.hold_tickets(user, own, HOLD, None)  # the control
            best = await hold_best(
                repo, book, user, BestSeatsOrder(event_id, 2, None, None), HOLD, None
            )
            return (own, refused), again, best
        finally:
            await pool.close()

    (own, refused), again, best = asyncio.run(main())
    assert refused.outcome is HoldOutcome.TICKET_UNAVAILABLE and refused.obtainable == []
    assert again.outcome is HoldOutcome.HELD  # what the check is there for
    assert best.decision.outcome is HoldOutcome.HELD
    got = [h.ticket_id for h in best.decision.holds]
    assert set(got).isdisjoint(own)
    assert seats_of(db, got) == [("S00", "1", 3), ("S00", "1", 4)]
    mine = db.execute(
        "SELECT count(*) FROM tickets WHERE event_id = %s AND holder_user_id = %s",
        (event_id, user),
    ).fetchone()
    assert mine == (4,)


def test_a_seated_event_sold_out_answers_no_adjacent_seats_with_the_count(stack, catalog, operator):
    """The picture sees nothing: the exact function answers, with the single seats left."""
    event_id = new_event(catalog, operator, sections=1, rows=1, seats=5)

    async def main() -> list[BestDecision]:
        ((pool, repo, book),) = await _processes(stack, 1)
        try:
            answers = []
            for i in range(3):
                answers.append(
                    await hold_best(
                        repo,
                        book,
                        f"{PEOPLE}-out-{i}",
                        BestSeatsOrder(event_id, 2, None, None),
                        HOLD,
                        None,
                    )
                )
            return answers
        finally:
            await pool.close()

    a, b, c = asyncio.run(main())
    assert a.decision.outcome is HoldOutcome.HELD and b.decision.outcome is HoldOutcome.HELD
    assert c.decision.outcome is HoldOutcome.NO_ADJACENT_SEATS and c.seats_remaining == 1


def test_the_booking_service_proposes_from_its_picture_through_the_gateway(
    stack, catalog, operator
):
    """The stack's booking processes hold best-available seats from their pictures (the
    picks counter), and the answers are the ones the tests of test_best_available.py see."""
    event_id = new_event(catalog, operator, sections=1, rows=2, seats=4)
    before = scrape(stack, "booking")
    with grpc.insecure_channel(stack.gateway) as channel:
        booking = booking_pb2_grpc.BookingServiceStub(channel)
        for i in range(4):
            booking.ReserveBestAvailable(
                booking_pb2.ReserveBestAvailableRequest(event_id=event_id, quantity=2),
                metadata=(("authorization", f"Bearer {stack.token(f'{PEOPLE}-gw-{i}')}"),),
            )

    def proposed() -> bool:
        after = scrape(stack, "booking")
        name = "ticketing_best_available_picks_total"
        return sample(after, name, outcome="held") - sample(before, name, outcome="held") >= 4

    assert eventually(proposed)
