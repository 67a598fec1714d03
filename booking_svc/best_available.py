""" "Best available" proposed by the booking process, decided by Postgres (issue 12).

``hold_best_available`` in plpgsql walks the venue's rows for every order, and its cost grows
with the full rows before the first free one; single-seat holds cost one conditional update
each and share statements (group commit). Here a process keeps a picture of each event's free
seats (``seat_picture.SeatPicture``, loaded once from Postgres), proposes a block from it and
holds exactly those seats through the single-seat path (``HoldSource.hold_picked``: the same
batches, the same ``hold_tickets`` per order with the user's lock, the sale's checks, the cap
and the all-or-nothing conditional update). What the picture believes is never what decides:

- Postgres refuses a block some seat of which is not free (taken in another process, or the
  buyer's own already): the picture learns those seats, reads that row again, and proposes
  another block, at most ``MAX_PROPOSALS`` times;
- when the picture sees no block (after reading the event again, at most every 0.25 s), or
  after ``MAX_PROPOSALS`` refusals, or for an order the picture cannot answer exactly (a tier,
  a section, a quantity the event refuses), ``hold_best_available`` itself answers: the seats
  it finds, or NO_ADJACENT_SEATS with the single seats remaining, or TICKET_UNAVAILABLE.

How far a proposal may be from the strict order of ``hold_best_available``, documented in
README.md's best-available section: the row is the best row with a block *in the picture*. The
picture misses seats freed since it was read by another process or by a lapsed hold (it is
read again every ``refresh_seconds``, and whenever it sees nothing), so for that long a
proposal may be in a worse row than a freed block. And a process with concurrent requests
proposes within its side's half of each row first (``SeatPicture.propose``): the best row
with room in that half, which is a later row than the strict order's when only the other
half of a better row (or a block across the middle) is free; those go once no row has room
in the half. A lone request (nothing else in flight in its process, nor in the last second)
gets the strict block.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable

from booking_svc import metrics
from booking_svc.domain import BestDecision, BestSeatsOrder, HoldOutcome
from booking_svc.ports import HoldSource, SeatPictures
from booking_svc.seat_picture import SeatPicture, Side
from ticketing_common.errors import Unavailable

log = logging.getLogger("booking.best_available")

# Blocks proposed for one order before the exact function is asked instead.
MAX_PROPOSALS = 3
# How long after a proposal made while others were in flight the event counts as contended.
CONTENDED_SECONDS = 1.0
# Refusals that are the order's answer whichever seats were proposed (the sale's checks).
_FINAL = {
    HoldOutcome.SALE_NOT_OPEN,
    HoldOutcome.SALE_CLOSED,
    HoldOutcome.NOT_ADMITTED,
    HoldOutcome.LIMIT_EXCEEDED,
}


@dataclasses.dataclass(slots=True)
class _Entry:
    picture: SeatPicture
    read_at: float
    reading: asyncio.Task[None] | None = None
    # Until when the event counts as contended in this process (see ``PictureBook.side_for``).
    contended_until: float = 0.0


class PictureBook:
    """The pictures of the events this process was asked for best-available seats of: at most
    ``max_events`` (the least recently asked go), each read again every ``refresh_seconds``
    in the background, and on demand when it sees nothing (at most every ``min_reread``)."""

    def __init__(
        self,
        source: SeatPictures,
        *,
        lane: Callable[[], Awaitable[int]] | None = None,
        refresh_seconds: float = 5.0,
        min_reread: float = 0.25,
        max_events: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._lane = lane
        self._side: Side | None = None
        self._side_lock = asyncio.Lock()
        self._refresh = refresh_seconds
        self._min_reread = min_reread
        self._max_events = max_events
        self._clock = clock
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()
        self._loading: dict[str, asyncio.Future[SeatPicture | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def side(self) -> Side:
        """This process's side under concurrency: its lane (a shared counter) odd or even,
        taken once (the first requests of a process arrive together: one takes it)."""
        if self._side is None:
            async with self._side_lock:
                if self._side is None:
                    try:
                        lane = await self._lane() if self._lane else random.randrange(2)  # noqa: S311
                    except Exception:  # the lane is only a way to collide less
                        lane = random.randrange(2)  # noqa: S311
                    self._side = Side.RIGHT if lane % 2 else Side.LEFT
        return self._side

    async def side_for(self, picture: SeatPicture) -> Side | None:
        """The side a proposal takes: None (the strict block) for a lone request; the process's
        side while the event is contended here: other proposals in flight now, or less than
        ``CONTENDED_SECONDS`` ago (between two turns of a surge a process may have none in
        flight for a moment, and a strict proposal then is one in the other process's half)."""
        entry = self._entries.get(picture.event_id)
        now = self._clock()
        if picture.inflight:
            if entry is not None:
                entry.contended_until = now + CONTENDED_SECONDS
            return await self.side()
        if entry is not None and now < entry.contended_until:
            return await self.side()
        return None

    async def get(self, event_id: str) -> SeatPicture | None:
        entry = self._entries.get(event_id)
        if entry is not None:
            self._entries.move_to_end(event_id)
            if entry.reading is None and self._clock() - entry.read_at > self._refresh:
                entry.reading = self._spawn(self._reread(event_id, entry))
            return entry.picture
        loading = self._loading.get(event_id)
        if loading is None:
            # One read per event however many ask at once, in a task of its own: a buyer who
            # leaves (deadline) does not cancel it for the others.
            loading = asyncio.ensure_future(self._load(event_id))
            self._loading[event_id] = loading
            loading.add_done_callback(_retrieved)
        return await asyncio.shield(loading)

    async def _load(self, event_id: str) -> SeatPicture | None:
        try:
            picture = await self._source.seat_picture(event_id)
        finally:
            del self._loading[event_id]
        if picture is not None:
            self._entries[event_id] = _Entry(picture, self._clock())
            while len(self._entries) > self._max_events:
                self._entries.popitem(last=False)
        return picture

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _reread(self, event_id: str, entry: _Entry) -> None:
        try:
            since = entry.picture.generation
            free = await self._source.free_seat_ids(event_id, None)
            entry.picture.reload(free, since)
            entry.read_at = self._clock()
        except Exception as exc:
            log.warning("could not read event %s's seats again: %s", event_id, exc)
        finally:
            entry.reading = None

    async def reread_now(self, picture: SeatPicture) -> bool:
        """Read the whole event again unless it was read less than ``min_reread`` ago (or
        is being read); whether it was."""
        entry = self._entries.get(picture.event_id)
        if entry is None or entry.picture is not picture:
            return False
        if entry.reading is not None:
            await asyncio.shield(entry.reading)
            return True
        if self._clock() - entry.read_at < self._min_reread:
            return False
        entry.reading = self._spawn(self._reread(picture.event_id, entry))
        await asyncio.shield(entry.reading)
        return True

    async def reread_row(self, picture: SeatPicture, place: tuple[str, str]) -> None:
        since = picture.generation
        try:
            free = await self._source.free_seat_ids(picture.event_id, place)
        except Unavailable:
            return
        picture.reload(free, since, place=place)

    def released(self, event_id: str, ticket_ids: list[str]) -> None:
        """Seats this process gave back."""
        entry = self._entries.get(event_id)
        if entry is not None:
            entry.picture.mark_free(ticket_ids)


def _retrieved(task: asyncio.Future[SeatPicture | None]) -> None:
    if not task.cancelled():
        task.exception()  # every waiter has it; none may be left to


async def hold_best(
    source: HoldSource,
    book: PictureBook,
    user_id: str,
    order: BestSeatsOrder,
    duration: dt.timedelta,
    admitted_event: str | None,
) -> BestDecision:
    """The order's answer: a proposed block Postgres held, or ``hold_best_available``'s."""
    try:
        picture = await book.get(order.event_id)
    except Unavailable:
        raise
    except Exception:
        log.warning("no seat picture of event %s", order.event_id, exc_info=True)
        picture = None
    if picture is not None and picture.can_answer(order):
        reread = False
        for _ in range(MAX_PROPOSALS):
            # Beyond its half of the rows, or when it sees nothing, the picture is read again
            # first (at most every 0.25 s): what is there is mostly the other process's.
            proposal = picture.propose(order, await book.side_for(picture), beyond_half=reread)
            if proposal is None and not reread:
                reread = True
                await book.reread_now(picture)
                proposal = picture.propose(order, await book.side_for(picture))
            if proposal is None:
                break
            try:
                decision = await source.hold_picked(
                    user_id, proposal.ticket_ids, duration, admitted_event
                )
            except BaseException:
                picture.settle(proposal)
                raise
            if decision.outcome is HoldOutcome.HELD:
                picture.settle(proposal, taken=proposal.ticket_ids)
                metrics.BEST_PICKS.labels("held").inc()
                rank = {t: i for i, t in enumerate(proposal.ticket_ids)}
                holds = sorted(decision.holds, key=lambda h: rank[h.ticket_id])
                return BestDecision(dataclasses.replace(decision, holds=holds), 0)
            if decision.outcome is HoldOutcome.TICKET_UNAVAILABLE:
                gone = set(proposal.ticket_ids) - set(decision.obtainable)
                picture.settle(proposal, taken=gone)
                metrics.BEST_PICKS.labels("refused").inc()
                await book.reread_row(picture, (proposal.section, proposal.row))
                continue
            picture.settle(proposal)
            window = decision.window
            if decision.outcome in _FINAL and not (
                decision.outcome is HoldOutcome.LIMIT_EXCEEDED
                and window is not None
                and order.quantity > window.max_tickets_per_user
            ):
                metrics.BEST_PICKS.labels("refused").inc()
                return BestDecision(decision, 0)
            break
    metrics.BEST_PICKS.labels("exact").inc()
    return await source.hold_best_available(user_id, order, duration, admitted_event)
