"""A booking process's picture of an event's free seats, for "best available" (issue 12).

"The booking process proposes, Postgres decides": a picture is the process's belief about which
seats of one event are free, in the venue's best order. A best-available request takes a
candidate block from it (``propose``), which is marked tentatively taken so that concurrent
requests of the same process never propose the same seats; the block is then held, all or
nothing, through the same group-committed statement as single-seat holds, and the answer is
told back (``settle``). The picture is never the guard: a seat it believes free may be taken
(Postgres refuses the block, the picture learns), and a seat it believes taken may have been
released (the picture is reloaded from time to time; when it offers nothing the exact
``hold_best_available`` answers instead).

"Best" is the order of ``hold_best_available`` (migrations 0007, 0010, 0014): sections as the
venue's seat map lists them (its rank), then rows in the map's order (nearest the stage
first), a standing section as one row of places in its section's place; within a row, seat
numbers side by side (consecutive integers). A proposal is the block at the start of the
best row's first run of free seats long enough, the block ``hold_best_available`` picks first.
Under concurrency (other proposals of the process in flight) a process proposes within its
side's half of each row first: the left half from the left (even lanes), the right half from
the right (odd lanes, the end of a run: also a block that function would try), so that two
booking processes share each row from its two ends and never propose the same seats while
both halves have room; the best row with a block in that half, else the best row at all.

Pure: no SQL, no gRPC, no Redis, no asyncio.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence

from booking_svc.domain import BestSeatsOrder


@dataclasses.dataclass(frozen=True, slots=True)
class SectionPlan:
    """A section of the venue's seat map, in the map's order."""

    name: str
    price_tier: str
    # Row labels in the map's order; empty for a standing section.
    rows: tuple[str, ...] = ()
    standing: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class SeatTicket:
    """One ticket of the event as loaded: ``row`` is '' for a standing place; ``seat`` its
    label (a number, or the ticket is never proposed); ``free`` whether Postgres called it
    available (a lapsed hold is)."""

    ticket_id: str
    section: str
    row: str
    seat: str
    free: bool


class Side(enum.Enum):
    LEFT = "left"
    RIGHT = "right"


@dataclasses.dataclass(slots=True)
class _Row:
    section: str
    label: str  # '' for a standing section
    tier: str
    standing: bool
    # Seat indexes into the picture's arrays, by seat number ascending.
    seats: list[int]
    numbers: list[int]
    # Seats free and not tentatively taken.
    open_count: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Proposal:
    """A candidate block, in seat order; tentatively taken until settled."""

    ticket_ids: tuple[str, ...]
    section: str
    row: str
    _seats: tuple[int, ...]
    _generation: int


class SeatPicture:
    def __init__(
        self,
        event_id: str,
        sections: Sequence[SectionPlan],
        tickets: Iterable[SeatTicket],
        *,
        max_tickets_per_user: int,
    ) -> None:
        self.event_id = event_id
        self.max_tickets_per_user = max_tickets_per_user
        self._sections = {s.name: s for s in sections}
        self._tiers = {s.price_tier for s in sections}
        by_place: dict[tuple[str, str], list[tuple[int, SeatTicket]]] = {}
        for t in tickets:
            if t.seat.isascii() and t.seat.isdigit() and len(t.seat) <= 9:
                by_place.setdefault((t.section, t.row), []).append((int(t.seat), t))
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._free = bytearray()
        self._tentative = bytearray()
        self._row_of: list[int] = []
        self._rows: list[_Row] = []
        self._row_by_place: dict[tuple[str, str], int] = {}
        # The generation of the last change this process made to each seat (held, refused,
        # released): a reload read before that change does not undo it.
        self._changed_at: list[int] = []
        self._generation = 0
        # Proposals not yet settled.
        self.inflight = 0
        for section in sections:
            labels = ("",) if section.standing else section.rows
            for label in labels:
                place = (section.name, label)
                if place in self._row_by_place:
                    continue
                found = sorted(by_place.get(place, []), key=lambda p: p[0])
                row = _Row(section.name, label, section.price_tier, section.standing, [], [])
                row_no = len(self._rows)
                for number, t in found:
                    i = len(self._ids)
                    self._ids.append(t.ticket_id)
                    self._index[t.ticket_id] = i
                    self._free.append(1 if t.free else 0)
                    self._tentative.append(0)
                    self._row_of.append(row_no)
                    self._changed_at.append(-1)
                    row.seats.append(i)
                    row.numbers.append(number)
                    row.open_count += 1 if t.free else 0
                self._rows.append(row)
                self._row_by_place[place] = row_no

    # --- what the picture can answer ----------------------------------------------------------

    def can_answer(self, order: BestSeatsOrder) -> bool:
        """Whether a proposal from this picture can only end as ``hold_best_available`` would:
        not for another event, nor an order that function refuses for what it asks (more than
        the event's cap, a tier or section the venue lacks, a standing section on a
        seated-only order), which goes to it for its exact answer."""
        if order.event_id != self.event_id or order.quantity > self.max_tickets_per_user:
            return False
        if order.price_tier is not None and order.price_tier not in self._tiers:
            return False
        if order.section is not None:
            section = self._sections.get(order.section)
            if section is None:
                return False
            if order.price_tier is not None and section.price_tier != order.price_tier:
                return False
            if order.seated_only and section.standing:
                return False
        return True

    @property
    def generation(self) -> int:
        """Pass to ``reload`` what this was when the reload's read began."""
        return self._generation

    def free_count(self) -> int:
        return sum(r.open_count for r in self._rows)

    # --- proposing and settling ---------------------------------------------------------------

    def propose(
        self, order: BestSeatsOrder, side: Side | None = None, *, beyond_half: bool = True
    ) -> Proposal | None:
        """The best block the picture sees for the order, tentatively taken; None if it sees
        none. Without a ``side``, the left-hand block of the best row. With one (a process
        with concurrent requests), first the best row with a block within that side's half
        of the row (the left half's leftmost block, the right half's rightmost), so that two
        processes on opposite sides share each row without proposing the same seats; if no
        row has one, and ``beyond_half``, the best row's block nearest that side (the caller
        may want the picture read again first: the other halves are the other process's)."""
        if side is not None:
            found = self._first(order, side, halves=True)
            if found is not None or not beyond_half:
                return found
        return self._first(order, side, halves=False)

    def _first(self, order: BestSeatsOrder, side: Side | None, *, halves: bool) -> Proposal | None:
        q = order.quantity
        for row in self._rows:
            if row.open_count < q:
                continue
            if order.price_tier is not None and row.tier != order.price_tier:
                continue
            if order.section is not None and row.section != order.section:
                continue
            if order.seated_only and row.standing:
                continue
            n = len(row.seats)
            right = side is Side.RIGHT
            if not halves:
                block = self._block(row, q, 0, n, right=right)
            elif right:
                block = self._block(row, q, n // 2, n, right=True)
            else:
                block = self._block(row, q, 0, n // 2, right=False)
            if block is not None:
                for i in block:
                    self._tentative[i] = 1
                row.open_count -= q
                self.inflight += 1
                return Proposal(
                    tuple(self._ids[i] for i in block),
                    row.section,
                    row.label,
                    tuple(block),
                    self._generation,
                )
        return None

    def _open(self, i: int) -> bool:
        return bool(self._free[i]) and not self._tentative[i]

    def _block(self, row: _Row, q: int, lo: int, hi: int, *, right: bool) -> list[int] | None:
        """Among the row's positions lo..hi-1: the block at the start of the first run of q
        open seats side by side, or (``right``) at the end of the last one."""
        seats, numbers = row.seats, row.numbers
        if row.standing:  # any q places: the lowest (or highest) numbers
            open_ = [i for i in seats[lo:hi] if self._open(i)]
            if len(open_) < q:
                return None
            return open_[-q:] if right else open_[:q]
        best: tuple[int, int] | None = None  # (first, last) position of the run chosen
        pos = lo
        while pos < hi:
            if not self._open(seats[pos]):
                pos += 1
                continue
            first = pos
            while (
                pos + 1 < hi and self._open(seats[pos + 1]) and numbers[pos + 1] == numbers[pos] + 1
            ):
                pos += 1
            if pos - first + 1 >= q:
                best = (first, pos)
                if not right:
                    break
            pos += 1
        if best is None:
            return None
        if right:
            return seats[best[1] - q + 1 : best[1] + 1]
        return seats[best[0] : best[0] + q]

    def settle(self, proposal: Proposal, *, taken: Iterable[str] = ()) -> None:
        """The block's hold was answered: its seats are no longer tentative, and the ones in
        ``taken`` (held by this request, or refused because someone else has them) are not
        free."""
        self._generation += 1
        self.inflight -= 1
        gone = {self._index[t] for t in taken if t in self._index}
        for i in proposal._seats:
            self._tentative[i] = 0
            row = self._rows[self._row_of[i]]
            if i in gone:
                self._changed_at[i] = self._generation
                if self._free[i]:
                    self._free[i] = 0
            elif self._free[i]:
                row.open_count += 1

    def mark_taken(self, ticket_ids: Iterable[str]) -> None:
        """Seats known not to be free (held elsewhere, sold)."""
        self._set(ticket_ids, free=False)

    def mark_free(self, ticket_ids: Iterable[str]) -> None:
        """Seats this process released."""
        self._set(ticket_ids, free=True)

    def _set(self, ticket_ids: Iterable[str], *, free: bool) -> None:
        self._generation += 1
        for t in ticket_ids:
            i = self._index.get(t)
            if i is None:
                continue
            self._changed_at[i] = self._generation
            self._assign(i, free)

    def _assign(self, i: int, free: bool) -> None:
        if bool(self._free[i]) == free:
            return
        self._free[i] = 1 if free else 0
        if not self._tentative[i]:
            self._rows[self._row_of[i]].open_count += 1 if free else -1

    def reload(
        self,
        free_ids: Iterable[str],
        since: int,
        *,
        place: tuple[str, str] | None = None,
    ) -> None:
        """What Postgres said is free (of one row, ``place`` = (section, row), or of the whole
        event), as read after ``generation`` was ``since``: every seat of the read is set free
        or not accordingly, except those this process changed after ``since`` (their state is
        newer than the read)."""
        free = {self._index[t] for t in free_ids if t in self._index}
        if place is None:
            seats: Iterable[int] = range(len(self._ids))
        else:
            row = self._row_by_place.get(place)
            seats = self._rows[row].seats if row is not None else ()
        for i in seats:
            if self._changed_at[i] <= since:
                self._assign(i, i in free)
