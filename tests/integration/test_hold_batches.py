"""Group commit of holds (issue 14): many buyers' orders in one ``hold_tickets_batch`` statement,
and several such statements racing, never hand a seat to two buyers nor beat a user's cap; each
buyer hears only about their own seats.

The same checker runs over a copy of the batch function whose seat lock is removed (the
``FOR UPDATE SKIP LOCKED`` of ``hold_tickets``) and sees the double holds, so the passing runs
are not runs that cannot fail. Both copies get the same widened window between the check and
the write (a short ``pg_sleep``), so the only difference between them is the guard.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool
from ticketing.catalog.v1 import catalog_pb2

from booking_svc.adapters.postgres import BookingRepository, _decision
from booking_svc.domain import BestSeatsOrder, HoldDecision, HoldOutcome
from tests.helpers import make_event, make_venue
from ticketing_common.db import open_pool

pytestmark = pytest.mark.integration

CAP = 3
SEATS = 60
HOLD = dt.timedelta(minutes=10)
# This run's buyers, seen by no other test (the stack is shared by the session).
PEOPLE = f"batches-{uuid.uuid4().hex[:8]}"
# The copies' schema; dropped at the end of the module.
COPIES = "hold_batch_copies"
LOCK = "\n         FOR UPDATE SKIP LOCKED\n    ) c;"
WIDENED = "\n    ) c;\n    PERFORM pg_sleep(0.01);"


def url_as(stack: Any, role: str) -> str:
    parts = urlsplit(stack.database_url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-hold-batches', role='operator')}"),)


_day = iter(range(950, 1100, 3))


def new_event(catalog, operator, *, seats: int = SEATS) -> list[str]:
    venue = make_venue(catalog, operator, sections=1, rows=1, seats=seats)
    event = make_event(
        catalog,
        operator,
        venue.id,
        days_ahead=next(_day),
        tiers={"premium": 5000},
        max_tickets_per_user=CAP,
    )
    page = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=event.id))
    return [t.id for t in page.tickets]


@pytest.fixture(scope="module")
def copies(stack) -> Iterator[str]:
    """Two copies of the batch function over their own copies of ``hold_tickets``: ``guarded``
    (the live text, window widened) and ``unguarded`` (the same, without the seat lock)."""
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        single = conn.execute("SELECT pg_get_functiondef('hold_tickets'::regproc)").fetchone()[0]
        batch = conn.execute("SELECT pg_get_functiondef('hold_tickets_batch'::regproc)").fetchone()[
            0
        ]
        assert LOCK in single, "hold_tickets changed: update the copies' substitutions"
        assert "FROM hold_tickets(" in batch
        conn.execute(f"DROP SCHEMA IF EXISTS {COPIES} CASCADE")
        conn.execute(f"CREATE SCHEMA {COPIES}")
        for name, body in (
            ("guarded", single.replace(LOCK, LOCK.replace(") c;", "") + WIDENED)),
            ("unguarded", single.replace(LOCK, WIDENED)),
        ):
            conn.execute(
                body.replace("public.hold_tickets(", f"{COPIES}.hold_tickets_{name}(").replace(
                    "hold_tickets.event_id", f"hold_tickets_{name}.event_id"
                )
            )
            conn.execute(
                batch.replace("public.hold_tickets_batch(", f"{COPIES}.batch_{name}(").replace(
                    "FROM hold_tickets(", f"FROM {COPIES}.hold_tickets_{name}("
                )
            )
        try:
            yield COPIES
        finally:
            conn.execute(f"DROP SCHEMA {COPIES} CASCADE")


# --- the checker ----------------------------------------------------------------------------

Told = list[tuple[str, list[str], HoldDecision]]  # (user, seats asked, what they were told)


def double_holds(told: Told) -> dict[str, set[str]]:
    """Seats more than one buyer was told are theirs."""
    owners: dict[str, set[str]] = {}
    for user, _, decision in told:
        for hold in decision.holds:
            owners.setdefault(hold.ticket_id, set()).add(user)
    return {seat: users for seat, users in owners.items() if len(users) > 1}


def check(db, told: Told, tickets: list[str]) -> dict[str, set[str]]:
    """Every invariant but the double hold is asserted here; the double holds are returned
    (the control case expects some). Prints what it saw."""
    held = [(u, d) for u, _, d in told if d.outcome is HoldOutcome.HELD]
    outcomes: dict[str, int] = {}
    for _, _, decision in told:
        outcomes[decision.outcome.value] = outcomes.get(decision.outcome.value, 0) + 1
    doubles = double_holds(told)
    print(f"{len(told)} orders: {outcomes}; {len(doubles)} seat(s) told to two buyers")
    for user, asked, decision in told:  # a buyer hears about their own seats only
        assert {h.ticket_id for h in decision.holds} <= set(asked), (user, asked, decision)
        if decision.outcome is HoldOutcome.HELD:
            assert sorted(h.ticket_id for h in decision.holds) == sorted(asked)
    per_user: dict[str, set[str]] = {}
    for user, decision in held:
        per_user.setdefault(user, set()).update(h.ticket_id for h in decision.holds)
    assert max(map(len, per_user.values()), default=0) <= CAP, per_user
    if not doubles:  # what Postgres keeps is what the buyers were told
        rows = db.execute(
            "SELECT id::text, holder_user_id FROM tickets WHERE id = ANY(%s::uuid[])"
            " AND status = 'held'",
            (tickets,),
        ).fetchall()
        told_owner = {h.ticket_id: u for u, d in held for h in d.holds}
        assert dict(rows) == told_owner
    return doubles


# --- the race: statements of many orders each, from several connections at once -------------


def orders_for(tickets: list[str], rng: random.Random, n: int) -> list[tuple[str, list[str]]]:
    """``n`` orders of one or two seats, every seat wanted by several buyers: most orders from
    buyers of their own (their batches race freely for the seats), one in four from one of five
    hoarders, who send many (a batch often holds two of one hoarder's, so the cap is tried)."""

    def buyer() -> str:  # names of this module only: other modules count their users' holds
        if rng.random() < 0.25:
            return f"{PEOPLE}-hoarder-{rng.randrange(5)}"
        return f"{PEOPLE}-buyer-{rng.randrange(10**6)}"

    return [(buyer(), rng.sample(tickets, rng.choice((1, 1, 2)))) for _ in range(n)]


async def race(
    connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]],
    function: str,
    tickets: list[str],
    *,
    connections: int = 6,
    batches: int = 4,
    orders: int = 15,
    deadlocks_expected: bool = False,
) -> Told:
    rng = random.Random(14)
    plan = [[orders_for(tickets, rng, orders) for _ in range(batches)] for _ in range(connections)]
    start = asyncio.Event()
    told: Told = []

    async def session(mine: list[list[tuple[str, list[str]]]]) -> None:
        async with await connect() as conn:
            await start.wait()
            for batch in mine:
                try:
                    cur = await conn.execute(
                        "SELECT req, outcome, event_id::text, on_sale_time, start_time,"
                        " queue_enabled, max_tickets_per_user, already, held_ids::text[],"
                        " held_prices, held_currencies, held_expire_times FROM"
                        f" {function}(%s::text[], %s::integer[], %s::uuid[], %s, %s::uuid[])",
                        (
                            [u for u, _ in batch],
                            [len(s) for _, s in batch],
                            [t for _, s in batch for t in s],
                            HOLD,
                            [None] * len(batch),
                        ),
                    )
                except psycopg.errors.DeadlockDetected:
                    # Only a copy that waits for seats can deadlock; nobody was told anything.
                    assert deadlocks_expected
                    continue
                for row in await cur.fetchall():
                    user, seats = batch[row[0] - 1]
                    told.append((user, seats, _decision(row[1:])))

    tasks = [asyncio.create_task(session(p)) for p in plan]
    await asyncio.sleep(0.2)  # every session connected and waiting
    start.set()
    await asyncio.gather(*tasks)
    return told


def run_race(stack, function: str, tickets: list[str]) -> Told:
    copy = function.startswith(COPIES)
    # The live function as booking's role; the copies belong to the admin, run as it.
    url = stack.database_url if copy else url_as(stack, "ticketing_booking")

    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(url, autocommit=True)

    return asyncio.run(race(connect, function, tickets, deadlocks_expected=copy))


def test_racing_batches_never_hand_a_seat_to_two_buyers_nor_beat_the_cap(
    stack, catalog, operator, db
):
    tickets = new_event(catalog, operator)
    told = run_race(stack, "hold_tickets_batch", tickets)
    assert len(told) == 6 * 4 * 15  # every order answered, once
    assert any(d.outcome is HoldOutcome.HELD for _, _, d in told)
    assert any(d.outcome is HoldOutcome.LIMIT_EXCEEDED for _, _, d in told)
    assert not check(db, told, tickets)


def test_the_same_race_with_a_wider_window_still_holds_every_seat_once(
    stack, catalog, operator, db, copies
):
    tickets = new_event(catalog, operator)
    told = run_race(stack, f"{copies}.batch_guarded", tickets)
    assert not check(db, told, tickets)


def test_control_the_batch_without_its_seat_lock_hands_seats_out_twice(
    stack, catalog, operator, db, copies
):
    """The seat lock off (no FOR UPDATE SKIP LOCKED before the update): the same checker sees
    seats told to two buyers, so the tests above can fail."""
    tickets = new_event(catalog, operator)
    told = run_race(stack, f"{copies}.batch_unguarded", tickets)
    assert check(db, told, tickets)


# --- through the booking adapter's batcher ---------------------------------------------------


def test_concurrent_holds_through_the_repository_share_statements_and_stay_correct(
    stack, catalog, operator, db
):
    """256 holds at once through ``BookingRepository`` (the booking process's own path): they go
    to Postgres in fewer statements than holds, and the checker finds every invariant kept."""
    tickets = new_event(catalog, operator, seats=120)
    rng = random.Random(7)
    wanted = orders_for(tickets, rng, 256)

    async def main() -> tuple[Told, int]:
        pool: AsyncConnectionPool = await open_pool(
            url_as(stack, "ticketing_booking"), max_size=4, name="test-hold-batches"
        )
        try:
            await pool.wait(timeout=30)
            repo = BookingRepository(pool)
            decisions = await asyncio.gather(
                *(repo.hold_tickets(u, s, HOLD, None) for u, s in wanted)
            )
            return [
                (u, s, d) for (u, s), d in zip(wanted, decisions, strict=True)
            ], repo.batcher.batches
        finally:
            await pool.close()

    told, statements = asyncio.run(main())
    print(f"256 holds in {statements} statement(s)")
    assert statements < 256 / 4
    assert not check(db, told, tickets)


def test_concurrent_best_available_orders_share_statements_seated_only_included(
    stack, catalog, operator
):
    """Best-available orders at once through ``BookingRepository``, half of them seated-only
    (migration 0014's argument, passed on per order by 0015's batch function): they share
    statements, no batch falls back to one statement per order, and the pairs are disjoint."""
    venue = make_venue(catalog, operator, sections=2, rows=4, seats=10)
    event = make_event(catalog, operator, venue.id, days_ahead=next(_day), max_tickets_per_user=2)
    orders = [
        (f"{PEOPLE}-best-{i}", BestSeatsOrder(event.id, 2, None, None, seated_only=i % 2 == 0))
        for i in range(32)
    ]

    async def main() -> tuple[list[Any], int, int]:
        pool: AsyncConnectionPool = await open_pool(
            url_as(stack, "ticketing_booking"), max_size=4, name="test-hold-batches"
        )
        try:
            await pool.wait(timeout=30)
            repo = BookingRepository(pool)
            decisions = await asyncio.gather(
                *(repo.hold_best_available(u, o, HOLD, None) for u, o in orders)
            )
            return decisions, repo.best_batcher.batches, repo.best_batcher.fallbacks
        finally:
            await pool.close()

    decisions, statements, fallbacks = asyncio.run(main())
    seats = [h.ticket_id for d in decisions for h in d.decision.holds]
    print(f"32 best-available orders in {statements} statement(s), {fallbacks} fallback(s)")
    assert fallbacks == 0
    assert statements < 32
    assert all(
        d.decision.outcome is HoldOutcome.HELD and len(d.decision.holds) == 2 for d in decisions
    )
    assert len(seats) == len(set(seats)) == 64


def test_a_batch_with_bad_orders_still_answers_the_others(stack, catalog, operator, db):
    """In one batch, an order for a ticket that does not exist is refused on its own, and one
    Postgres cannot even read (not a UUID: the batch statement fails) gets its own error while
    the other buyers' holds go through."""
    tickets = new_event(catalog, operator, seats=6)
    missing = "00000000-0000-4000-8000-000000000000"

    async def main() -> list[HoldDecision | BaseException]:
        pool: AsyncConnectionPool = await open_pool(
            url_as(stack, "ticketing_booking"), max_size=2, name="test-hold-batches"
        )
        try:
            await pool.wait(timeout=30)
            repo = BookingRepository(pool)
            return await asyncio.gather(
                repo.hold_tickets(f"{PEOPLE}-good-1", [tickets[0]], HOLD, None),
                repo.hold_tickets(f"{PEOPLE}-missing", [missing], HOLD, None),
                repo.hold_tickets(f"{PEOPLE}-malformed", ["not-a-uuid"], HOLD, None),
                repo.hold_tickets(f"{PEOPLE}-good-2", [tickets[1], tickets[2]], HOLD, None),
                return_exceptions=True,
            )
        finally:
            await pool.close()

    good1, absent, malformed, good2 = asyncio.run(main())
    assert isinstance(good1, HoldDecision) and isinstance(good2, HoldDecision)
    assert isinstance(absent, HoldDecision)
    assert good1.outcome is HoldOutcome.HELD and [h.ticket_id for h in good1.holds] == [tickets[0]]
    assert absent.outcome is HoldOutcome.TICKET_NOT_FOUND and not absent.holds
    assert isinstance(malformed, psycopg.errors.InvalidTextRepresentation), malformed
    assert good2.outcome is HoldOutcome.HELD
    assert sorted(h.ticket_id for h in good2.holds) == sorted(tickets[1:3])
