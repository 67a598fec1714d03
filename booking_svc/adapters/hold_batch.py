"""Group commit of holds (issue 14): the single-seat holds a booking process has in hand at one
moment go to Postgres as one ``hold_tickets_batch`` statement, one round trip and one commit.

When a hot sale opens, hundreds of buyers ask for seats of one event at once. Each hold is a
fraction of a millisecond of Postgres work, but a round trip, a commit and psycopg's share of
the event loop each. The batcher keeps at most ``max_inflight`` statements in flight; a hold
that arrives while they are busy waits for the next one, so a lone buyer goes straight to
Postgres (no added delay at low load) and a surge forms batches by itself, as large as the
surge (up to ``max_batch``).

Postgres still decides every order on its own: ``hold_tickets_batch`` (migration 0012) runs
``hold_tickets`` once per order inside the statement, with the order's user lock, checks and
conditional update, and returns each order's own answer. Should the batch statement fail as a
whole for a reason that is not the database being unreachable or too busy, each of its orders
is retried on its own, so one order's error never becomes another buyer's. "Best available"
orders are batched the same way (``hold_best_available_batch``, one ``hold_best_available``
per order).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from booking_svc.domain import BestDecision, BestSeatsOrder, HoldDecision
from ticketing_common.errors import Unavailable

# One order: (user, ticket ids, hold duration, admitted event, proposed by a seat picture).
Order = tuple[str, Sequence[str], dt.timedelta, str | None, bool]
# One "best available" order: (user, what is asked, hold duration, admitted event).
BestOrder = tuple[str, BestSeatsOrder, dt.timedelta, str | None]

log = logging.getLogger(__name__)

OrderT = TypeVar("OrderT", Order, BestOrder)
DecisionT = TypeVar("DecisionT", HoldDecision, BestDecision)


class HoldBatcher(Generic[OrderT, DecisionT]):
    """One statement in flight per process by default: measured with bench/booking_holds.py on
    two cores, two in flight made batches of one or two holds (each its own round trip and
    commit again) and cost more CPU per hold than it saved in waiting."""

    def __init__(
        self,
        run_one: Callable[[OrderT], Awaitable[DecisionT]],
        run_many: Callable[[Sequence[OrderT]], Awaitable[list[DecisionT]]],
        *,
        max_batch: int = 64,
        max_inflight: int = 1,
    ) -> None:
        """``run_one`` runs one order as its own statement; ``run_many`` orders of one hold
        duration as one statement, answering in the orders' order."""
        self._run_one: Callable[[OrderT], Awaitable[DecisionT]] = run_one
        self._run_many: Callable[[Sequence[OrderT]], Awaitable[list[DecisionT]]] = run_many
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._waiting: list[tuple[OrderT, asyncio.Future[DecisionT]]] = []
        self._inflight = 0
        self._drains: set[asyncio.Task[None]] = set()
        # Batch sizes sent, for the benchmark's and the tests' view of what happened.
        self.batches = 0
        self.orders = 0
        # Batch statements that failed as a whole and were retried order by order: each one is
        # logged, since a batch function that always fails would otherwise only cost speed.
        self.fallbacks = 0

    async def hold(self, order: OrderT) -> DecisionT:
        future: asyncio.Future[DecisionT] = asyncio.get_running_loop().create_future()
        self._waiting.append((order, future))
        if self._inflight < self._max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        try:
            # Let the holds that arrived in this turn of the event loop join the first batch.
            await asyncio.sleep(0)
            while self._waiting:
                duration = self._waiting[0][0][2]
                batch = [w for w in self._waiting if w[0][2] == duration][: self._max_batch]
                taken = {id(w) for w in batch}
                self._waiting = [w for w in self._waiting if id(w) not in taken]
                await self._send(batch)
        finally:
            self._inflight -= 1

    async def _send(self, batch: list[tuple[OrderT, asyncio.Future[DecisionT]]]) -> None:
        self.batches += 1
        self.orders += len(batch)
        if len(batch) == 1:
            await _settle(batch[0][1], self._run_one(batch[0][0]))
            return
        try:
            decisions = await self._run_many([order for order, _ in batch])
        except Unavailable as exc:  # every order would meet the same database
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception:
            self.fallbacks += 1
            log.warning(
                "a batch of %d holds failed as a whole; each is retried on its own",
                len(batch),
                exc_info=True,
            )
            await asyncio.gather(*(_settle(f, self._run_one(o)) for o, f in batch))
            return
        for (_, future), decision in zip(batch, decisions, strict=True):
            if not future.done():  # a buyer who left (deadline) is not told
                future.set_result(decision)


async def _settle(future: asyncio.Future[Any], call: Awaitable[Any]) -> None:
    try:
        result = await call
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    if not future.done():
        future.set_result(result)
