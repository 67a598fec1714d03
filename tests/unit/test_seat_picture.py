"""Best available proposed by the booking process (issue 12): the seat picture
(booking_svc/seat_picture.py) in memory, and the use of it (booking_svc/best_available.py)
against a fake of Postgres that decides every proposed block the way ``hold_picked`` does.

What a buyer would notice: the block they get is the best one (section rank, then the row
nearest the stage, then the lowest seats), side by side; two requests in one process never
get the same seats; a block someone else took is never handed out, another one is; and when
the picture has nothing, the exact answer (NO_ADJACENT_SEATS and its count) comes from
``hold_best_available``."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import pytest

from booking_svc.best_available import MAX_PROPOSALS, PictureBook, hold_best
from booking_svc.domain import (
    BestDecision,
    BestSeatsOrder,
    Hold,
    HoldDecision,
    HoldOutcome,
    SaleWindow,
)
from booking_svc.seat_picture import SeatPicture, SeatTicket, SectionPlan, Side

EVENT = "00000000-0000-4000-8000-0000000000e1"
HOLD = dt.timedelta(minutes=10)
NOW = dt.datetime(2026, 12, 4, 18, 0, tzinfo=dt.UTC)


def tid(section: str, row: str, seat: int | str) -> str:
    return f"{section}/{row}/{seat}"


def venue(
    sections: int = 2, rows: int = 2, seats: int = 6, *, standing: int = 0
) -> tuple[list[SectionPlan], list[SeatTicket]]:
    """S00 premium, the others standard; a standing "Floor" first when ``standing``."""
    plans, tickets = [], []
    if standing:
        plans.append(SectionPlan("Floor", "standard", (), standing=True))
        tickets += [
            SeatTicket(tid("Floor", "", n), "Floor", "", str(n), True)
            for n in range(1, standing + 1)
        ]
    for s in range(sections):
        name = f"S{s:02d}"
        labels = tuple(str(r) for r in range(1, rows + 1))
        plans.append(SectionPlan(name, "premium" if s == 0 else "standard", labels))
        tickets += [
            SeatTicket(tid(name, r, n), name, r, str(n), True)
            for r in labels
            for n in range(1, seats + 1)
        ]
    return plans, tickets


def picture(*taken: str, cap: int = 8, **shape) -> SeatPicture:
    plans, tickets = venue(**shape)
    gone = set(taken)
    tickets = [
        SeatTicket(t.ticket_id, t.section, t.row, t.seat, t.ticket_id not in gone) for t in tickets
    ]
    return SeatPicture(EVENT, plans, tickets, max_tickets_per_user=cap)


def order(
    quantity: int = 2, tier: str | None = None, section: str | None = None, seated: bool = False
):
    return BestSeatsOrder(EVENT, quantity, tier, section, seated)


def overlaps(blocks: Sequence[Sequence[str]]) -> set[str]:
    """Seats proposed in more than one block."""
    seen: set[str] = set()
    twice: set[str] = set()
    for block in blocks:
        for seat in block:
            (twice if seat in seen else seen).add(seat)
    return twice


# --- the picture ----------------------------------------------------------------------------


def test_the_best_block_is_the_first_section_then_the_front_row_then_the_lowest_seats():
    p = picture(tid("S00", "1", 2))
    first = p.propose(order(2))
    # Seat 2 of the front row is taken: 1 alone does not fit two, 3-4 does.
    assert first is not None and first.ticket_ids == (tid("S00", "1", 3), tid("S00", "1", 4))
    three = p.propose(order(3))  # 5-6 left in row 1: the next row
    assert three is not None and three.ticket_ids == tuple(tid("S00", "2", n) for n in (1, 2, 3))
    standard = p.propose(order(2, tier="standard"))
    assert standard is not None and standard.section == "S01" and standard.row == "1"
    named = p.propose(order(1, section="S01"))
    assert named is not None and named.ticket_ids == (tid("S01", "1", 3),)


def test_a_gap_in_the_numbering_or_a_label_that_is_no_number_is_not_side_by_side():
    plans = [SectionPlan("S00", "premium", ("1",))]
    seats = ["1", "2", "4", "5", "6", "A7", "A8"]
    tickets = [SeatTicket(f"t{s}", "S00", "1", s, True) for s in seats]
    p = SeatPicture(EVENT, plans, tickets, max_tickets_per_user=8)
    three = p.propose(order(3))
    assert three is not None and three.ticket_ids == ("t4", "t5", "t6")
    assert p.propose(order(3)) is None  # 1-2 are two; A7, A8 are never proposed


def test_standing_places_are_any_free_ones_and_a_seated_only_order_passes_them_over():
    p = picture(tid("Floor", "", 1), standing=5, sections=1, rows=1, seats=4)
    floor = p.propose(order(3))
    assert floor is not None and floor.ticket_ids == tuple(tid("Floor", "", n) for n in (2, 3, 4))
    seated = p.propose(order(2, seated=True))
    assert seated is not None and seated.section == "S00"


def test_proposals_in_flight_in_one_process_never_share_a_seat_and_run_out_exactly():
    p = picture(sections=1, rows=3, seats=10)
    blocks = []
    while (proposal := p.propose(order(2))) is not None:
        blocks.append(proposal.ticket_ids)
    assert len(blocks) == 15 and p.inflight == 15
    assert overlaps(blocks) == set()


def test_control_two_processes_pictures_do_propose_the_same_seats():
    """The overlap check above can fail: two pictures (two processes) know nothing of each
    other's proposals, which is why Postgres decides and why they take different sides."""
    a, b = picture(), picture()
    same = [a.propose(order(2)).ticket_ids, b.propose(order(2)).ticket_ids]
    assert overlaps(same) == set(same[0])


def test_two_sides_share_each_row_from_its_two_ends_and_meet_only_across_the_middle():
    left, right = picture(sections=1, rows=2, seats=10), picture(sections=1, rows=2, seats=10)
    lefts = [left.propose(order(2), Side.LEFT).ticket_ids for _ in range(4)]
    rights = [right.propose(order(2), Side.RIGHT).ticket_ids for _ in range(4)]
    row = lambda r, *ns: tuple(tid("S00", r, n) for n in ns)  # noqa: E731
    assert lefts == [row("1", 1, 2), row("1", 3, 4), row("2", 1, 2), row("2", 3, 4)]
    assert rights == [row("1", 9, 10), row("1", 7, 8), row("2", 9, 10), row("2", 7, 8)]
    assert overlaps(lefts + rights) == set()  # 40 seats in flight from two processes
    # No half has room left: the best row's block nearest each side, across the middle.
    across = [
        left.propose(order(2), Side.LEFT).ticket_ids,
        right.propose(order(2), Side.RIGHT).ticket_ids,
    ]
    assert across == [row("1", 5, 6)] * 2
    # Without a side (a lone request), the strict block: row 1 from the left.
    assert picture(sections=1, rows=2, seats=10).propose(order(2)).ticket_ids == row("1", 1, 2)


def test_settling_gives_back_what_was_not_taken_and_learns_what_someone_else_has():
    p = picture(sections=1, rows=1, seats=4)
    first = p.propose(order(2))
    p.settle(first, taken=[first.ticket_ids[1]])  # refused: seat 2 is someone else's
    again = p.propose(order(2))
    assert again.ticket_ids == (tid("S00", "1", 3), tid("S00", "1", 4))
    p.settle(again, taken=again.ticket_ids)  # held
    assert p.inflight == 0 and p.free_count() == 1
    assert p.propose(order(2)) is None
    assert p.propose(order(1)).ticket_ids == (tid("S00", "1", 1),)


def test_a_reread_brings_back_seats_freed_elsewhere_but_not_over_a_newer_local_change():
    p = picture(tid("S00", "1", 1), tid("S00", "1", 2), sections=1, rows=1, seats=4)
    since = p.generation
    held = p.propose(order(2))  # 3-4, held while the read is under way
    p.settle(held, taken=held.ticket_ids)
    # The read was made before that hold: it saw every seat free.
    p.reload([tid("S00", "1", n) for n in range(1, 5)], since)
    assert p.propose(order(2)).ticket_ids == (tid("S00", "1", 1), tid("S00", "1", 2))
    assert p.propose(order(1)) is None


def test_orders_the_picture_cannot_answer_exactly_are_left_to_postgres():
    p = picture(tid("Floor", "", 1), standing=4, cap=4)
    assert p.can_answer(order(2))
    assert not p.can_answer(order(5))  # over the event's cap: INVALID_ARGUMENT quantity
    assert not p.can_answer(order(2, tier="gold"))
    assert not p.can_answer(order(2, section="Z9"))
    assert not p.can_answer(order(2, tier="premium", section="S01"))
    assert not p.can_answer(order(2, section="Floor", seated=True))
    assert p.can_answer(order(2, section="Floor"))
    assert not p.can_answer(BestSeatsOrder("00000000-0000-4000-8000-0000000000e2", 2, None, None))


# --- proposing, holding, falling back (a fake of Postgres) ----------------------------------


class FakePostgres:
    """Tickets and their holders, decided as ``hold_picked`` and ``hold_best_available`` do;
    ``seat_picture`` answers from ``stale``, the state when the picture was read, if set."""

    def __init__(self, plans, tickets, cap: int = 8) -> None:
        self.plans, self.tickets, self.cap = plans, tickets, cap
        self.holder: dict[str, str] = {}
        self.stale: dict[str, str] | None = None
        self.exact_calls = 0
        self.picked_calls = 0
        self.row_reads = 0
        self.window = SaleWindow(EVENT, NOW, NOW + dt.timedelta(days=9), False, cap)

    async def seat_picture(self, event_id: str) -> SeatPicture | None:
        if event_id != EVENT:
            return None
        holder = self.holder if self.stale is None else self.stale
        return SeatPicture(
            EVENT,
            self.plans,
            [
                SeatTicket(t.ticket_id, t.section, t.row, t.seat, t.ticket_id not in holder)
                for t in self.tickets
            ],
            max_tickets_per_user=self.cap,
        )

    async def free_seat_ids(self, event_id, place):
        if place is not None:
            self.row_reads += 1
        return [
            t.ticket_id
            for t in self.tickets
            if t.ticket_id not in self.holder and (place is None or (t.section, t.row) == place)
        ]

    def _mine(self, user: str) -> int:
        return sum(1 for u in self.holder.values() if u == user)

    async def hold_picked(self, user, ids, duration, admitted) -> HoldDecision:
        self.picked_calls += 1
        await asyncio.sleep(0)  # the round trip: other requests go on meanwhile
        if any(self.holder.get(t) == user for t in ids):
            free = [t for t in ids if self.holder.get(t) != user]
            return HoldDecision(HoldOutcome.TICKET_UNAVAILABLE, None, 0, [], free)
        already = self._mine(user)
        if already + len(ids) > self.cap:
            return HoldDecision(HoldOutcome.LIMIT_EXCEEDED, self.window, already, [], [])
        free = [t for t in ids if t not in self.holder]
        if len(free) < len(ids):
            return HoldDecision(HoldOutcome.TICKET_UNAVAILABLE, self.window, already, [], free)
        for t in ids:
            self.holder[t] = user
        holds = [Hold(t, 5000, "EUR", NOW + duration) for t in sorted(ids)]  # Postgres: by id
        return HoldDecision(HoldOutcome.HELD, self.window, already, holds, list(ids))

    async def hold_best_available(self, user, best: BestSeatsOrder, duration, admitted):
        self.exact_calls += 1
        self.stale, saved = None, self.stale
        truth = await self.seat_picture(EVENT)
        self.stale = saved
        proposal = truth.propose(best)
        if proposal is None:
            left = len(await self.free_seat_ids(EVENT, None))
            return BestDecision(
                HoldDecision(HoldOutcome.NO_ADJACENT_SEATS, self.window, 0, [], []), left
            )
        return BestDecision(
            await self.hold_picked(user, proposal.ticket_ids, duration, admitted), 0
        )


def world(sections=1, rows=2, seats=4, cap=8):
    plans, tickets = venue(sections=sections, rows=rows, seats=seats)
    db = FakePostgres(plans, tickets, cap)
    return db, PictureBook(db, lane=None, refresh_seconds=60, min_reread=0.0)


def run(db, book, user, best: BestSeatsOrder) -> BestDecision:
    return asyncio.run(hold_best(db, book, user, best, HOLD, None))


def seats(decision: BestDecision) -> list[str]:
    return [h.ticket_id for h in decision.decision.holds]


def test_a_proposed_block_is_held_through_the_single_seat_path_in_seat_order():
    db, book = world()
    got = run(db, book, "ann", order(2))
    assert got.decision.outcome is HoldOutcome.HELD
    assert seats(got) == [tid("S00", "1", 1), tid("S00", "1", 2)]
    assert db.exact_calls == 0 and db.picked_calls == 1


def test_a_block_taken_in_another_process_is_refused_and_another_one_held():
    db, book = world()
    db.stale = {}  # the picture was read before bob, in another process, took 1-2 and 3
    db.holder = {tid("S00", "1", 1): "bob", tid("S00", "1", 2): "bob", tid("S00", "1", 3): "bob"}

    async def both() -> BestDecision:
        return await hold_best(db, book, "ann", order(2), HOLD, None)

    got = asyncio.run(both())
    assert seats(got) == [tid("S00", "2", 1), tid("S00", "2", 2)]
    assert db.row_reads == 1  # row 1 read again after the refusal: 3-4 was not tried
    assert db.exact_calls == 0


def test_a_buyer_is_never_handed_their_own_seats_as_new_ones():
    db, book = world(rows=1)
    db.stale = {}
    db.holder = {tid("S00", "1", 1): "ann", tid("S00", "1", 2): "ann"}
    got = run(db, book, "ann", order(2))
    assert seats(got) == [tid("S00", "1", 3), tid("S00", "1", 4)]
    assert db._mine("ann") == 4


def test_when_the_picture_sees_nothing_the_exact_function_answers_with_its_count():
    db, book = world(rows=1, seats=3)
    assert seats(run(db, book, "ann", order(2))) == [tid("S00", "1", 1), tid("S00", "1", 2)]
    refused = run(db, book, "bob", order(2))
    assert refused.decision.outcome is HoldOutcome.NO_ADJACENT_SEATS
    assert refused.seats_remaining == 1 and db.exact_calls == 1


def test_a_seat_freed_elsewhere_is_found_by_the_exact_function_when_the_picture_is_stale():
    db, book = world(rows=1, seats=2)
    run(db, book, "ann", order(2))
    db.holder.clear()  # ann's hold lapsed; this process's picture still has both taken
    book._min_reread = 3600.0  # and it was read too recently to be read again
    got = run(db, book, "bob", order(2))
    assert seats(got) == [tid("S00", "1", 1), tid("S00", "1", 2)]
    assert db.exact_calls == 1


def test_orders_the_picture_cannot_answer_and_a_run_of_refusals_go_to_the_exact_function():
    db, book = world(sections=2)
    run(db, book, "ann", order(2, tier="gold"))
    assert db.exact_calls == 1 and db.picked_calls == 0
    db.stale = {}  # read when all was free; since then three of the four rows were taken
    db.holder = {t.ticket_id: "bob" for t in db.tickets if (t.section, t.row) != ("S01", "2")}
    book2 = PictureBook(db, lane=None, refresh_seconds=60, min_reread=3600.0)
    got = asyncio.run(hold_best(db, book2, "carl", order(2), HOLD, None))
    # One refusal per row (each read again after it), then the exact function.
    assert db.picked_calls == MAX_PROPOSALS + 1 and db.exact_calls == 2
    assert seats(got) == [tid("S01", "2", 1), tid("S01", "2", 2)]


def test_the_sales_checks_answer_a_proposal_as_they_answer_the_exact_function():
    db, book = world(cap=3)
    run(db, book, "ann", order(2))
    over = run(db, book, "ann", order(2))
    assert over.decision.outcome is HoldOutcome.LIMIT_EXCEEDED
    assert db.exact_calls == 0
    # The event's cap lowered after the picture was read: the exact function says why.
    db.window = SaleWindow(EVENT, NOW, NOW + dt.timedelta(days=9), False, 1)
    db.cap = 1
    run(db, book, "bob", order(2))
    assert db.exact_calls == 1


@pytest.mark.parametrize("buyers", [40])
def test_concurrent_orders_in_two_processes_seat_every_pair_once(buyers):
    """Two pictures (two processes, opposite sides) over one fake Postgres, 40 buyers of two
    seats for 40 seats at once: 20 pairs, no seat twice, each pair side by side."""
    plans, tickets = venue(sections=1, rows=4, seats=10)
    db = FakePostgres(plans, tickets)
    books = [
        PictureBook(db, lane=None, refresh_seconds=60, min_reread=0.0),
        PictureBook(db, lane=None, refresh_seconds=60, min_reread=0.0),
    ]
    books[0]._side, books[1]._side = Side.LEFT, Side.RIGHT

    async def race() -> list[BestDecision]:
        return await asyncio.gather(
            *(hold_best(db, books[i % 2], f"u{i}", order(2), HOLD, None) for i in range(buyers))
        )

    answers = asyncio.run(race())
    held = [seats(a) for a in answers if a.decision.outcome is HoldOutcome.HELD]
    assert len(held) == 20 and overlaps(held) == set()
    for pair in held:
        (s1, r1, n1), (s2, r2, n2) = (p.split("/") for p in pair)
        assert (s1, r1) == (s2, r2) and int(n2) == int(n1) + 1


def test_a_process_takes_its_lane_once_however_many_requests_arrive_together():
    """Two processes must end on opposite sides: the lane counter is read once per process,
    even by the first requests that arrive at the same moment."""
    taken = []

    async def lane() -> int:
        taken.append(len(taken) + 1)
        await asyncio.sleep(0.01)
        return taken[-1]

    async def first_requests() -> set[Side]:
        book = PictureBook(FakePostgres(*venue()), lane=lane)
        return set(await asyncio.gather(*(book.side() for _ in range(20))))

    assert asyncio.run(first_requests()) == {Side.RIGHT} and taken == [1]
