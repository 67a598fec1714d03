"""Waiting-queue rules, free of gRPC, SQL and Redis.

The line is an array of *slots*. Every buyer who joins takes the next slot (``n``); the admitter
walks the slots from ``head`` upwards and admits, at the paced rate, whoever still waits there.
A buyer who leaves or drops out only marks the slot *gone*, so joining, leaving and admitting are
O(1) and a position is ``1 + (slot - head) - (gone slots between head and slot)``.

Before the sale opens the slots are shuffled as they are filled: buyer ``i`` (0-based) draws a
slot ``j`` uniformly in ``[0, i]`` and, if ``j != i``, the buyer at ``j`` moves to ``i`` (the
"inside-out" Fisher-Yates shuffle). After every join the pre-queue is therefore a uniformly random
permutation of its buyers, whatever their join order, so at opening the line is already drawn
and nothing has to be reordered, however long the pre-queue. Nobody sees a pre-queue position
(it is 0 until the sale opens). The first action at or after the opening *seals* the line: from
then on slots are only appended, first come first served.

Admission is paced by a token bucket refilled at the event's rate (users per minute) from the
Redis clock, holding at most ``BURST_SECONDS`` of admissions, and capped by the number of
admissions still active. A buyer keeps the place by watching or polling; liveness is recorded
per *epoch* of half the grace period, and a buyer not seen in the last ``ALIVE_EPOCHS`` epochs
has dropped out: kept for at least the grace period after the last sign of life, gone at most
1.5 grace periods after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate

from ticketing_common.errors import FailedPrecondition, InvalidArgument, NotFound, Reason

# A full bucket holds this many seconds of admissions: enough to ride out an admitter tick
# delayed by a busy machine without losing pace, small enough that a resumed queue does not
# burst.
BURST_SECONDS = 2.0
# A buyer is alive while seen in one of the last ALIVE_EPOCHS epochs of grace/2 each.
ALIVE_EPOCHS = 3
# Upper bound of the pre-queue draw, exclusive: 2**53 keeps every draw an exact double in Lua.
DRAW_SPAN = 2**53
MAX_RATE_PER_MINUTE = 1_000_000
MAX_ACTIVE_USERS = 10_000_000


class EntryState(enum.Enum):
    """Where a buyer stands, as the contract names it."""

    PRE_QUEUE = "PRE_QUEUE"
    WAITING = "WAITING"
    ADMITTED = "ADMITTED"
    EXPIRED = "EXPIRED"
    LEFT = "LEFT"


class Standing(enum.Enum):
    """What the store knows of one buyer (finer than EntryState: a dropped-out buyer and an
    expired admission both read EXPIRED)."""

    NONE = "none"
    PRE_QUEUE = "pre"
    WAITING = "wait"
    ADMITTED = "admitted"
    ADMISSION_EXPIRED = "expired"
    DROPPED = "dropped"
    LEFT = "left"


_STATE_OF: Mapping[Standing, EntryState] = {
    Standing.PRE_QUEUE: EntryState.PRE_QUEUE,
    Standing.WAITING: EntryState.WAITING,
    Standing.ADMITTED: EntryState.ADMITTED,
    Standing.ADMISSION_EXPIRED: EntryState.EXPIRED,
    Standing.DROPPED: EntryState.EXPIRED,
    Standing.LEFT: EntryState.LEFT,
}
TERMINAL = frozenset({EntryState.ADMITTED, EntryState.EXPIRED, EntryState.LEFT})


# --- Settings -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """An event's queue settings as the catalog holds them."""

    event_id: str
    enabled: bool
    rate_per_minute: int
    max_active: int
    admission_ttl_seconds: int
    open_time: dt.datetime
    end_time: dt.datetime

    @property
    def open_ms(self) -> int:
        return to_ms(self.open_time)

    def require_enabled(self) -> Policy:
        if not self.enabled:
            raise FailedPrecondition(
                "this event sells without a waiting queue",
                reason=Reason.QUEUE_NOT_ENABLED,
                metadata={"event_id": self.event_id},
            )
        return self

    def require_on_sale(self, now_ms: int) -> None:
        if now_ms >= to_ms(self.end_time):
            raise FailedPrecondition(
                "the event is over; its queue is closed",
                reason=Reason.SALE_CLOSED,
                metadata={"event_id": self.event_id},
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Controls:
    """The operator's overrides, kept with the queue; None leaves the catalog's value."""

    paused: bool = False
    rate_per_minute: int | None = None
    max_active: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Pacing:
    """What the admitter applies: the catalog's settings under the operator's overrides."""

    paused: bool
    rate_per_minute: int
    max_active: int
    admission_ttl_seconds: int


def pacing(policy: Policy, controls: Controls) -> Pacing:
    return Pacing(
        paused=controls.paused,
        rate_per_minute=controls.rate_per_minute or policy.rate_per_minute,
        max_active=controls.max_active or policy.max_active,
        admission_ttl_seconds=policy.admission_ttl_seconds,
    )


def validate_controls(rate_per_minute: int | None, max_active: int | None) -> None:
    if rate_per_minute is not None and not 0 < rate_per_minute <= MAX_RATE_PER_MINUTE:
        raise InvalidArgument(
            f"admission_rate_per_minute must be 1..{MAX_RATE_PER_MINUTE}",
            metadata={"field": "admission_rate_per_minute"},
        )
    if max_active is not None and not 0 < max_active <= MAX_ACTIVE_USERS:
        raise InvalidArgument(
            f"max_active_users must be 1..{MAX_ACTIVE_USERS}",
            metadata={"field": "max_active_users"},
        )


# --- Pre-queue shuffle ------------------------------------------------------------------------


def prequeue_slot(count: int, draw: int) -> int:
    """The slot of the pre-queue's next buyer when ``count`` buyers are already in it, for a
    uniform ``draw`` in [0, DRAW_SPAN): uniform in [0, count] (inside-out Fisher-Yates).

    The Redis adapter computes the same in Lua as ``math.floor(draw / DRAW_SPAN * (count+1))``
    clamped to ``count``; its bias is below (count+1)/2**53.
    """
    return min(count, math.floor(draw / DRAW_SPAN * (count + 1)))


class PreQueue:
    """The pre-queue as an in-memory model of what the Redis adapter does to its slot map
    (``lua/join.lua``, ``lua/leave.lua``): joins shuffle, a leaver's slot stays in the map
    marked gone (and is moved, gone, like any other when a later joiner draws it), a buyer
    already in line keeps the slot, and one who left joins again at a new slot.
    ``tests/integration/test_queue_store.py`` checks it against the scripts over many seeded
    random runs."""

    def __init__(self) -> None:
        self.slots: list[str] = []  # slot -> the buyer last put there
        self.gone: list[bool] = []  # slot -> its buyer left
        self.at: dict[str, int] = {}  # buyer in line -> slot

    def join(self, user: str, draw: int) -> int:
        if user in self.at:
            return self.at[user]
        i = len(self.slots)
        j = prequeue_slot(i, draw)
        self.slots.append(user)
        self.gone.append(False)
        if j != i:
            mover = self.slots[j]
            self.slots[i], self.gone[i] = mover, self.gone[j]
            if self.at.get(mover) == j:
                self.at[mover] = i
            self.slots[j], self.gone[j] = user, False
        self.at[user] = j
        return j

    def leave(self, user: str) -> None:
        slot = self.at.pop(user, None)
        if slot is not None:
            self.gone[slot] = True

    @property
    def waiting(self) -> int:
        return len(self.at)

    def line(self) -> list[str]:
        """The buyers in line, in slot order: the order the sale will admit them in."""
        return [user for slot, user in enumerate(self.slots) if not self.gone[slot]]


# --- Pacing -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Bucket:
    """Admissions owed (fractional) as of ``updated_ms`` on the Redis clock."""

    tokens: float
    updated_ms: int


def burst(rate_per_minute: int) -> float:
    return max(1.0, rate_per_minute / 60.0 * BURST_SECONDS)


def refill(bucket: Bucket | None, now_ms: int, rate_per_minute: int) -> Bucket:
    """The bucket at ``now_ms``. A clock that went backwards (a Redis failover) adds nothing."""
    if bucket is None:
        return Bucket(0.0, now_ms)
    elapsed = max(0, now_ms - bucket.updated_ms)
    tokens = min(burst(rate_per_minute), bucket.tokens + elapsed * rate_per_minute / 60_000.0)
    return Bucket(tokens, max(now_ms, bucket.updated_ms))


@dataclasses.dataclass(frozen=True, slots=True)
class AdmissionPlan:
    """How many to admit now, and the refilled bucket; the store keeps it less the buyers
    actually admitted (fewer than ``limit`` when the line is short)."""

    limit: int
    bucket: Bucket


def plan_admissions(
    bucket: Bucket | None, now_ms: int, pace: Pacing, *, active: int, open_ms: int
) -> AdmissionPlan:
    """Admit what the bucket allows, up to the room under the cap on active admissions.
    Nothing accrues while paused or before the opening."""
    if pace.paused or now_ms < open_ms:
        return AdmissionPlan(0, Bucket(0.0, now_ms))
    refilled = refill(bucket, now_ms, pace.rate_per_minute)
    room = max(0, pace.max_active - active)
    return AdmissionPlan(min(math.floor(refilled.tokens), room), refilled)


# --- Estimated wait ---------------------------------------------------------------------------


def estimate_wait(position: int, pace: Pacing, *, active: int) -> dt.timedelta | None:
    """Time until the buyer at ``position`` is admitted; None while admission is paused.

    The first ``max_active - active`` buyers go at the rate; after that the cap binds and
    admissions follow expiries: at most ``max_active`` per admission lifetime.
    """
    if pace.paused:
        return None
    if position <= 0:
        return dt.timedelta(0)
    rate = pace.rate_per_minute / 60.0
    sustained = min(rate, pace.max_active / pace.admission_ttl_seconds)
    first = min(position, max(0, pace.max_active - active))
    seconds = first / rate + (position - first) / sustained
    return dt.timedelta(seconds=math.ceil(seconds))


# --- Positions from the gone-bitmap -----------------------------------------------------------

_POPCOUNT = bytes(bin(i).count("1") for i in range(256))


def gone_before(bitmap: bytes, first_bit: int, head: int, slots: Iterable[int]) -> dict[int, int]:
    """For each slot, the gone slots in [head, slot), from a copy of the gone-bitmap (Redis bit
    order: bit 0 is the high bit of byte 0) whose first byte holds bit ``first_bit``
    (a multiple of 8, at most ``head``). Bits past the copy count as not gone."""
    per_byte = bitmap.translate(_POPCOUNT)
    prefix = [0, *accumulate(per_byte)]  # prefix[k]: gone bits in bytes [0, k)

    def upto(bit: int) -> int:  # gone bits in [first_bit, bit)
        rel = bit - first_bit
        if rel <= 0:
            return 0
        whole, rest = divmod(rel, 8)
        if whole >= len(bitmap):
            return prefix[-1]
        partial = bitmap[whole] >> (8 - rest) if rest else 0
        return prefix[whole] + _POPCOUNT[partial]

    base = upto(head)
    return {slot: upto(slot) - base for slot in slots}


def bit_set(bitmap: bytes, first_bit: int, slot: int) -> bool:
    """Whether ``slot``'s bit is set in a bitmap copy starting at ``first_bit``."""
    rel = slot - first_bit
    if rel < 0 or rel >= len(bitmap) * 8:
        return False
    return bool(bitmap[rel // 8] >> (7 - rel % 8) & 1)


def position(slot: int, head: int, gone_ahead: int) -> int:
    return 1 + slot - head - gone_ahead


def stale_slots(
    gone: bytes, alive: Sequence[bytes], first_bit: int, head: int, end: int
) -> list[int]:
    """Slots in [head, end) neither gone nor seen in any of the ``alive`` bitmaps (copies
    starting at bit ``first_bit``, as in ``gone_before``): the buyers who dropped out."""
    length = max(len(gone), *(len(a) for a in alive)) if alive else len(gone)
    if length == 0 or end <= head:
        return []
    seen = int.from_bytes(gone.ljust(length, b"\0"), "big")
    for bitmap in alive:
        seen |= int.from_bytes(bitmap.ljust(length, b"\0"), "big")
    total = length * 8
    stale = ~seen & ((1 << total) - 1)
    lo, hi = head - first_bit, min(end - first_bit, total)
    found = [first_bit + lo + i for i in range(hi - lo) if (stale >> (total - 1 - lo - i)) & 1]
    # Slots past the copies were never seen either.
    found.extend(range(max(head, first_bit + total), end))
    return found


def epoch_ms(grace_seconds: float) -> int:
    return max(1, int(grace_seconds * 1000 / 2))


# --- Entries ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """One buyer as the store sees them at ``now_ms`` (Redis clock)."""

    standing: Standing
    now_ms: int
    waiting: int = 0
    # PRE_QUEUE/WAITING: the slot; ADMITTED/ADMISSION_EXPIRED: the admission's expiry (ms).
    slot: int = -1
    position: int = 0
    admission_expire_ms: int = 0
    join_ms: int = 0
    active: int = 0
    controls: Controls = Controls()


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A buyer's place as the contract shows it."""

    event_id: str
    user_id: str
    state: EntryState
    position: int
    queue_length: int
    estimated_wait: dt.timedelta | None
    join_time: dt.datetime | None
    open_time: dt.datetime
    admission_expire_time: dt.datetime | None = None
    admission_token: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def entry(policy: Policy, user_id: str, snap: Snapshot) -> Entry:
    """The contract's view of a snapshot; NOT_FOUND if the buyer never joined."""
    if snap.standing is Standing.NONE:
        raise not_in_queue(policy.event_id, user_id)
    state = _STATE_OF[snap.standing]
    pace = pacing(policy, snap.controls)
    wait: dt.timedelta | None = None
    position_ = 0
    if state is EntryState.WAITING:
        position_ = snap.position
        wait = estimate_wait(position_, pace, active=snap.active)
    elif state is EntryState.PRE_QUEUE:
        # The order is drawn but not shown: expect the middle of the pre-queue.
        until_open = dt.timedelta(milliseconds=max(0, policy.open_ms - snap.now_ms))
        middle = estimate_wait((snap.waiting + 1) // 2, pace, active=snap.active)
        wait = None if middle is None else until_open + middle
    expire = None
    if state is EntryState.ADMITTED or snap.standing is Standing.ADMISSION_EXPIRED:
        expire = from_ms(snap.admission_expire_ms)
    return Entry(
        event_id=policy.event_id,
        user_id=user_id,
        state=state,
        position=position_,
        queue_length=snap.waiting,
        estimated_wait=wait,
        join_time=from_ms(snap.join_ms) if snap.join_ms else None,
        open_time=policy.open_time,
        admission_expire_time=expire if state is EntryState.ADMITTED else None,
    )


# Watchers near the front hear of every move; further back, of moves of 5% or more, and of
# anything at least every MAX_SILENCE_SECONDS: a place 8,000th need not tick every second, and
# that keeps 10,000 watchers within one process's means.
NEAR_FRONT = 100
SIGNIFICANT_MOVE = 0.05
MAX_SILENCE_SECONDS = 10.0


def move_worth_telling(previous: int, current: int, *, silent_for: float) -> bool:
    if current == previous:
        return False
    if current <= NEAR_FRONT or silent_for >= MAX_SILENCE_SECONDS:
        return True
    return abs(previous - current) >= SIGNIFICANT_MOVE * previous


def worth_pushing(previous: Entry | None, current: Entry, *, silent_for: float) -> bool:
    """Whether a watcher who last heard ``previous`` ``silent_for`` seconds ago should hear
    of ``current``."""
    if previous is None or previous.state is not current.state:
        return True
    if (previous.estimated_wait is None) != (current.estimated_wait is None):
        return True  # paused or resumed
    if current.state is EntryState.WAITING:
        return move_worth_telling(previous.position, current.position, silent_for=silent_for)
    if current.state is EntryState.PRE_QUEUE:
        return silent_for >= MAX_SILENCE_SECONDS and (
            current.queue_length != previous.queue_length
            or current.estimated_wait != previous.estimated_wait
        )
    return False


# --- Stats ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    event_id: str
    pacing: Pacing
    waiting: int
    active: int
    admitted_last_minute: int
    admitted_total: int
    open_time: dt.datetime


def not_in_queue(event_id: str, user_id: str) -> NotFound:
    return NotFound(
        "you are not in this event's queue: join it first",
        reason=Reason.NOT_IN_QUEUE,
        metadata={"event_id": event_id, "user_id": user_id},
    )


def to_ms(value: dt.datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
