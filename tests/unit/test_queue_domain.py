"""The waiting queue's rules with fake clocks and random sources: the pre-queue shuffle, the
pacing bucket, estimated waits, positions from the gone-bitmap, entries and controls."""

import collections
import datetime as dt
import math
import random

import pytest

from queue_svc import domain
from queue_svc.domain import (
    DRAW_SPAN,
    Bucket,
    Controls,
    Entry,
    EntryState,
    Pacing,
    Policy,
    PreQueue,
    Snapshot,
    Standing,
)
from ticketing_common.errors import FailedPrecondition, InvalidArgument, NotFound

OPEN = dt.datetime(2030, 5, 1, 18, 0, tzinfo=dt.UTC)
OPEN_MS = domain.to_ms(OPEN)


def policy(**changes) -> Policy:
    fields = {
        "event_id": "e1",
        "enabled": True,
        "rate_per_minute": 600,
        "max_active": 500,
        "admission_ttl_seconds": 600,
        "open_time": OPEN,
        "end_time": OPEN + dt.timedelta(days=30),
    } | changes
    return Policy(**fields)


def pace(**changes) -> Pacing:
    fields = {
        "paused": False,
        "rate_per_minute": 600,
        "max_active": 500,
        "admission_ttl_seconds": 600,
    } | changes
    return Pacing(**fields)


def spearman(xs, ys) -> float:
    def ranks(values):
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        for rank, i in enumerate(order):
            out[i] = float(rank)
        return out

    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mean = (n - 1) / 2
    cov = sum((a - mean) * (b - mean) for a, b in zip(rx, ry, strict=True))
    var = sum((a - mean) ** 2 for a in rx)
    return cov / var


# --- The pre-queue shuffle ------------------------------------------------------------------


def test_a_draw_picks_each_slot_of_the_prefix_equally():
    count = 4
    draws = [k * (DRAW_SPAN // 1000) for k in range(1000)]
    tally = collections.Counter(domain.prequeue_slot(count, d) for d in draws)
    assert set(tally) == {0, 1, 2, 3, 4}
    assert all(190 <= n <= 210 for n in tally.values())


def test_the_largest_draw_stays_within_the_line():
    for count in (0, 1, 2, 999, 10**9):
        assert domain.prequeue_slot(count, DRAW_SPAN - 1) == count
        assert domain.prequeue_slot(count, 0) == 0


def test_the_shuffle_makes_every_order_equally_likely():
    rng = random.Random(7)
    users = ["a", "b", "c", "d"]
    trials = 24_000
    seen = collections.Counter()
    for _ in range(trials):
        line = PreQueue()
        for user in users:
            line.join(user, rng.randrange(DRAW_SPAN))
        seen[tuple(line.slots)] += 1
    assert len(seen) == 24
    expected = trials / 24
    chi2 = sum((n - expected) ** 2 / expected for n in seen.values())
    assert chi2 < 52.6  # p = 0.001 for 23 degrees of freedom


def test_a_thousand_buyers_end_up_uncorrelated_with_their_join_order():
    rng = random.Random(11)
    line = PreQueue()
    for i in range(1000):
        line.join(f"u{i:04d}", rng.randrange(DRAW_SPAN))
    assert sorted(line.slots) == [f"u{i:04d}" for i in range(1000)]
    join_order = [int(user[1:]) for user in line.slots]
    assert abs(spearman(list(range(1000)), join_order)) < 0.15


def test_control_a_draw_that_never_moves_anyone_keeps_join_order():
    line = PreQueue()
    for i in range(1000):
        line.join(f"u{i:04d}", DRAW_SPAN - 1)
    join_order = [int(user[1:]) for user in line.slots]
    assert spearman(list(range(1000)), join_order) == pytest.approx(1.0)


# --- Pacing -------------------------------------------------------------------------------


def test_the_bucket_fills_at_the_rate_up_to_its_burst():
    start = Bucket(0.0, 1_000)
    assert domain.refill(start, 2_000, 600).tokens == pytest.approx(10.0)
    assert domain.refill(start, 60_000, 600).tokens == pytest.approx(domain.burst(600))
    assert domain.burst(6) == 1.0  # a slow queue still admits one at a time


def test_a_clock_that_goes_backwards_adds_nothing():
    bucket = Bucket(3.0, 10_000)
    assert domain.refill(bucket, 9_000, 600) == Bucket(3.0, 10_000)


def test_a_new_bucket_starts_empty():
    assert domain.refill(None, 5_000, 600) == Bucket(0.0, 5_000)


def test_nothing_is_admitted_before_the_opening_or_while_paused():
    full = Bucket(20.0, OPEN_MS)
    early = domain.plan_admissions(full, OPEN_MS - 1, pace(), active=0, open_ms=OPEN_MS)
    paused = domain.plan_admissions(full, OPEN_MS + 1000, pace(paused=True), active=0,
                                    open_ms=OPEN_MS)  # fmt: skip
    assert early.limit == paused.limit == 0
    assert paused.bucket.tokens == 0.0  # a resumed queue does not burst


def test_the_cap_on_active_admissions_limits_the_plan():
    bucket = Bucket(15.0, OPEN_MS)
    plan = domain.plan_admissions(bucket, OPEN_MS, pace(max_active=500), active=495,
                                  open_ms=OPEN_MS)  # fmt: skip
    assert plan.limit == 5
    full = domain.plan_admissions(bucket, OPEN_MS, pace(max_active=500), active=500,
                                  open_ms=OPEN_MS)  # fmt: skip
    assert full.limit == 0


@pytest.mark.parametrize("jitter_ms", [0, 300, 1500])
def test_a_minute_of_ticks_admits_the_rate_even_when_ticks_run_late(jitter_ms):
    """The admitter's loop with a fake Redis clock: ticks every 100 ms plus random delays."""
    rng = random.Random(jitter_ms)
    rate = 3000
    now, bucket, admitted = OPEN_MS, None, 0
    while now < OPEN_MS + 60_000:
        plan = domain.plan_admissions(bucket, now, pace(rate_per_minute=rate, max_active=10**6),
                                      active=0, open_ms=OPEN_MS)  # fmt: skip
        admitted += plan.limit
        bucket = Bucket(plan.bucket.tokens - plan.limit, plan.bucket.updated_ms)
        now += 100 + (rng.randrange(jitter_ms) if jitter_ms else 0)
    assert admitted == pytest.approx(rate, rel=0.01)


def test_control_a_bucket_without_burst_loses_pace_when_ticks_run_late(monkeypatch):
    monkeypatch.setattr(domain, "BURST_SECONDS", 0.0)
    rng = random.Random(1)
    now, bucket, admitted = OPEN_MS, None, 0
    while now < OPEN_MS + 60_000:
        plan = domain.plan_admissions(bucket, now, pace(rate_per_minute=3000, max_active=10**6),
                                      active=0, open_ms=OPEN_MS)  # fmt: skip
        admitted += plan.limit
        bucket = Bucket(plan.bucket.tokens - plan.limit, plan.bucket.updated_ms)
        now += 100 + rng.randrange(1500)
    assert admitted < 3000 * 0.5


def test_operator_overrides_win_over_the_catalog():
    p = policy(rate_per_minute=600, max_active=500)
    assert domain.pacing(p, Controls()) == pace()
    changed = domain.pacing(p, Controls(paused=True, rate_per_minute=60, max_active=5))
    assert (changed.paused, changed.rate_per_minute, changed.max_active) == (True, 60, 5)


@pytest.mark.parametrize(("rate", "cap"), [(0, None), (-1, None), (None, 0), (10**7, None)])
def test_controls_out_of_range_are_invalid(rate, cap):
    with pytest.raises(InvalidArgument):
        domain.validate_controls(rate, cap)


# --- Estimated wait -----------------------------------------------------------------------


def test_the_wait_follows_the_rate_while_there_is_room():
    assert domain.estimate_wait(300, pace(), active=0) == dt.timedelta(seconds=30)
    assert domain.estimate_wait(1, pace(), active=0) == dt.timedelta(seconds=1)


def test_once_the_cap_binds_the_wait_follows_expiries():
    # 500 active for 600 s each: after the room is used, 500 per 10 minutes.
    wait = domain.estimate_wait(1000, pace(), active=0)
    assert wait == dt.timedelta(seconds=500 / 10 + 500 / (500 / 600))


def test_no_estimate_while_paused():
    assert domain.estimate_wait(10, pace(paused=True), active=0) is None


# --- Positions from bitmaps ---------------------------------------------------------------


def naive_bits(bitmap: bytes, first_bit: int) -> set[int]:
    return {
        first_bit + i * 8 + b for i, byte in enumerate(bitmap) for b in range(8)
        if byte >> (7 - b) & 1
    }  # fmt: skip


def test_gone_counts_match_a_naive_count():
    rng = random.Random(3)
    for _ in range(200):
        bitmap = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
        first_bit = 8 * rng.randrange(0, 4)
        head = first_bit + rng.randrange(0, 8)
        slots = [head + rng.randrange(0, 200) for _ in range(10)]
        gone = naive_bits(bitmap, first_bit)
        counted = domain.gone_before(bitmap, first_bit, head, slots)
        for slot in slots:
            assert counted[slot] == sum(1 for g in gone if head <= g < slot)
            assert domain.bit_set(bitmap, first_bit, slot) == (slot in gone)


def test_a_position_skips_the_gone_ahead():
    # head at 10, slots 10..14 in line, 11 and 13 gone: slot 14 is third.
    bitmap = bytes([0b00000000, 0b00010100])
    ahead = domain.gone_before(bitmap, 0, 10, [14])
    assert domain.position(14, 10, ahead[14]) == 3


def test_stale_slots_are_those_neither_gone_nor_seen():
    rng = random.Random(5)
    for _ in range(200):
        length = rng.randrange(1, 12)
        gone = bytes(rng.randrange(256) for _ in range(length))
        alive = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, length + 1)))
                 for _ in range(3)]  # fmt: skip
        first_bit = 8 * rng.randrange(0, 3)
        head = first_bit + rng.randrange(0, 8)
        end = head + rng.randrange(0, length * 8 + 16)
        seen = naive_bits(gone, first_bit).union(*(naive_bits(a, first_bit) for a in alive))
        expected = [s for s in range(head, end) if s not in seen]
        assert domain.stale_slots(gone, alive, first_bit, head, end) == expected


# --- Entries ------------------------------------------------------------------------------


def snapshot(standing: Standing, **fields) -> Snapshot:
    return Snapshot(standing=standing, now_ms=OPEN_MS + 1000, join_ms=OPEN_MS - 5000, **fields)


def test_a_waiting_entry_shows_position_length_and_wait():
    entry = domain.entry(policy(), "alice", snapshot(Standing.WAITING, position=60, waiting=90))
    assert (entry.state, entry.position, entry.queue_length) == (EntryState.WAITING, 60, 90)
    assert entry.estimated_wait == dt.timedelta(seconds=6)
    assert entry.join_time == OPEN - dt.timedelta(seconds=5)
    assert entry.open_time == OPEN


def test_a_pre_queue_entry_hides_its_place_and_expects_the_middle():
    snap = Snapshot(Standing.PRE_QUEUE, now_ms=OPEN_MS - 60_000, waiting=1200, slot=17)
    entry = domain.entry(policy(max_active=10_000), "alice", snap)
    assert (entry.state, entry.position) == (EntryState.PRE_QUEUE, 0)
    assert entry.estimated_wait == dt.timedelta(seconds=60 + 60)


@pytest.mark.parametrize(
    ("standing", "state"),
    [
        (Standing.DROPPED, EntryState.EXPIRED),
        (Standing.ADMISSION_EXPIRED, EntryState.EXPIRED),
        (Standing.LEFT, EntryState.LEFT),
    ],
)
def test_ended_entries_have_no_place_and_no_admission(standing, state):
    entry = domain.entry(policy(), "alice", snapshot(standing, admission_expire_ms=OPEN_MS))
    assert (entry.state, entry.position, entry.admission_expire_time) == (state, 0, None)
    assert entry.terminal


def test_an_admitted_entry_carries_its_expiry():
    expiry = OPEN_MS + 600_000
    entry = domain.entry(policy(), "alice", snapshot(Standing.ADMITTED, admission_expire_ms=expiry))
    assert entry.state is EntryState.ADMITTED
    assert entry.admission_expire_time == domain.from_ms(expiry)


def test_a_buyer_who_never_joined_is_not_found():
    with pytest.raises(NotFound) as err:
        domain.entry(policy(), "alice", snapshot(Standing.NONE))
    assert err.value.reason == "NOT_IN_QUEUE"


def test_an_event_without_queue_says_so():
    with pytest.raises(FailedPrecondition) as err:
        policy(enabled=False).require_enabled()
    assert err.value.reason == "QUEUE_NOT_ENABLED"


def test_an_ended_event_closes_its_queue():
    p = policy()
    p.require_on_sale(domain.to_ms(p.end_time) - 1)
    with pytest.raises(FailedPrecondition) as err:
        p.require_on_sale(domain.to_ms(p.end_time))
    assert err.value.reason == "SALE_CLOSED"


def make_entry(**fields) -> Entry:
    base = {
        "event_id": "e1",
        "user_id": "alice",
        "state": EntryState.WAITING,
        "position": 10,
        "queue_length": 100,
        "estimated_wait": dt.timedelta(seconds=100),
        "join_time": OPEN,
        "open_time": OPEN,
    } | fields
    return Entry(**base)


def test_watchers_near_the_front_hear_of_every_move():
    last = make_entry(position=50)
    assert domain.worth_pushing(None, last, silent_for=0)
    assert domain.worth_pushing(last, make_entry(position=49), silent_for=0.5)
    assert not domain.worth_pushing(last, make_entry(position=50, queue_length=99), silent_for=1)
    assert domain.worth_pushing(last, make_entry(state=EntryState.ADMITTED), silent_for=0)


def test_watchers_far_back_hear_of_big_moves_or_after_a_silence():
    last = make_entry(position=8000)
    assert not domain.worth_pushing(last, make_entry(position=7990), silent_for=1)
    assert domain.worth_pushing(last, make_entry(position=7600), silent_for=1)  # 5%
    assert domain.worth_pushing(
        last, make_entry(position=7990), silent_for=domain.MAX_SILENCE_SECONDS
    )


def test_watchers_hear_when_admission_pauses_or_resumes():
    last = make_entry(position=8000)
    paused = make_entry(position=8000, estimated_wait=None)
    assert domain.worth_pushing(last, paused, silent_for=0)
    assert domain.worth_pushing(paused, last, silent_for=0)


def test_the_pre_queue_hears_of_its_countdown_now_and_then():
    last = make_entry(state=EntryState.PRE_QUEUE, position=0)
    later = make_entry(state=EntryState.PRE_QUEUE, position=0, queue_length=150)
    assert not domain.worth_pushing(last, later, silent_for=1)
    assert domain.worth_pushing(last, later, silent_for=domain.MAX_SILENCE_SECONDS)
    assert not domain.worth_pushing(last, last, silent_for=domain.MAX_SILENCE_SECONDS)


def test_epochs_are_half_the_grace_period():
    assert domain.epoch_ms(60) == 30_000
    # Kept for at least the grace period: the last sign of life stays in one of the
    # ALIVE_EPOCHS epochs for (ALIVE_EPOCHS - 1) full epochs.
    assert (domain.ALIVE_EPOCHS - 1) * domain.epoch_ms(60) >= 60_000
    assert math.isclose(domain.ALIVE_EPOCHS * domain.epoch_ms(60) / 60_000, 1.5)


def test_every_standing_has_a_state_but_none():
    for standing in Standing:
        if standing is Standing.NONE:
            continue
        assert domain.entry(policy(), "u", snapshot(standing)).state in EntryState
