"""The waiting queue as buyers and operators see it, through the gateway (native gRPC with a
bearer token): a thousand buyers paced in at the configured rate, the pre-queue drawn at random
and first come first served after the opening, a watcher that sees its place move and gets its
admission, admission tokens bound to one user and one event, leaving, rejoining and operator
controls."""

import asyncio
import datetime as dt
import time
import uuid

import grpc
import pytest
from ticketing.catalog.v1 import catalog_pb2
from ticketing.queue.v1 import queue_pb2, queue_pb2_grpc

from deploy.stack.keys import claims_for, ensure_keys, sign
from deploy.stack.state import StateDir, admission_key
from tests.helpers import error_reason, make_event, make_venue, ts
from ticketing_common import admission
from ticketing_common.errors import PermissionDenied

pytestmark = pytest.mark.integration

EVENT_WITHOUT_QUEUE = "03a67087-67cc-5c61-b94c-c5f5e083f9f7"
S = queue_pb2


@pytest.fixture(scope="module")
def queue(channel):
    return queue_pb2_grpc.QueueServiceStub(channel)


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-queue', role='operator')}"),)


@pytest.fixture(scope="module")
def key(stack):
    return admission_key(StateDir(stack.state_dir))


def queue_event(catalog, operator, *, open_in: float, rate: int, cap: int = 10_000, ttl=600):
    """A new queue-enabled event whose sale opens ``open_in`` seconds from now."""
    venue = make_venue(catalog, operator, 1, 1, 10)
    opens = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=open_in)
    return make_event(
        catalog,
        operator,
        venue.id,
        days_ahead=30,
        on_sale_time=ts(opens),
        queue_policy=catalog_pb2.QueuePolicy(
            enabled=True,
            admission_rate_per_minute=rate,
            max_active_users=cap,
            admission_ttl_seconds=ttl,
        ),
    ).id


def as_user(stack, user: str):
    """Call metadata of a signed-in buyer (the stack's key is loaded once per stack)."""
    key = _signing_keys.get(stack.state_dir)
    if key is None:
        key = _signing_keys[stack.state_dir] = ensure_keys(StateDir(stack.state_dir))
    return (("authorization", f"Bearer {sign(key, claims_for(user))}"),)


_signing_keys: dict = {}


def ms(timestamp) -> int:
    return timestamp.seconds * 1000 + timestamp.nanos // 1_000_000


def ranks(values) -> list[float]:
    """Ranks with ties averaged."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(xs, ys) -> float:
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5


def wait_for(predicate, timeout: float, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# --- A thousand buyers ----------------------------------------------------------------------

RATE = 6000  # per minute: 100 a second, the thousand in about 10 s
PRE_QUEUE = 500
AFTER_OPENING = 500


def test_a_thousand_buyers_are_paced_at_the_rate_drawn_at_random_then_first_come_first_served(
    stack, catalog, queue, operator, key
):
    early = [f"early-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(PRE_QUEUE)]
    late = [f"late-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(AFTER_OPENING)]
    metadata = {user: as_user(stack, user) for user in early + late}
    event_id = queue_event(catalog, operator, open_in=8, rate=RATE)

    # Before the opening: everyone is in the pre-queue, with no place shown yet.
    for user in early:
        entry = queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=metadata[user])
        assert (entry.state, entry.position) == (S.QUEUE_ENTRY_STATE_PRE_QUEUE, 0), user
    opens = ms(entry.open_time) / 1000
    assert time.time() < opens, "the pre-queue joins took longer than the time to opening"
    time.sleep(max(0.0, opens - time.time()) + 0.3)

    # After the opening: first come, first served, each one behind everybody already there.
    for user in late:
        entry = queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=metadata[user])
        assert entry.state == S.QUEUE_ENTRY_STATE_WAITING
        assert entry.position == entry.queue_length  # the last in line

    def all_admitted():
        stats = queue.GetQueueStats(S.GetQueueStatsRequest(event_id=event_id), metadata=operator)
        return stats.admitted_total == PRE_QUEUE + AFTER_OPENING and stats

    stats = wait_for(all_admitted, timeout=90)
    assert stats, "not everyone was admitted within 90 s"
    assert stats.waiting == 0

    admitted_at: dict[str, int] = {}
    for user in early + late:
        entry = queue.GetQueuePosition(
            S.GetQueuePositionRequest(event_id=event_id), metadata=metadata[user]
        )
        assert entry.state == S.QUEUE_ENTRY_STATE_ADMITTED, user
        admission.verify(key, entry.admission.token, user_id=user, event_id=event_id)
        admitted_at[user] = ms(entry.admission.expire_time) - 600_000

    # The pace: admissions per minute within 5% of the rate (from the first batch to the last).
    times = sorted(admitted_at.values())
    first_batch = times.count(times[0])
    per_minute = (len(times) - first_batch) / (times[-1] - times[0]) * 60_000
    assert per_minute == pytest.approx(RATE, rel=0.05)

    # The pre-queue went first, in an order unrelated to when they joined...
    assert max(admitted_at[u] for u in early) <= min(admitted_at[u] for u in late)
    rho_early = spearman(list(range(PRE_QUEUE)), [admitted_at[u] for u in early])
    assert abs(rho_early) < 0.2, f"pre-queue order follows join order (rho={rho_early:.2f})"
    # ...and everyone after the opening in join order (the same measure sees it).
    late_times = [admitted_at[u] for u in late]
    assert late_times == sorted(late_times)
    assert spearman(list(range(AFTER_OPENING)), late_times) > 0.95


# --- Watching ---------------------------------------------------------------------------------


def test_a_watcher_sees_its_place_move_then_gets_its_admission(stack, catalog, queue, key):
    operator = (("authorization", f"Bearer {stack.token('ops-watch', role='operator')}"),)
    event_id = queue_event(catalog, operator, open_in=-60, rate=60)  # one a second
    other_event = queue_event(catalog, operator, open_in=-60, rate=60)
    ahead = [f"ahead-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
    for user in ahead:
        queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=as_user(stack, user))
    watcher = f"watcher-{uuid.uuid4().hex[:6]}"
    me = as_user(stack, watcher)
    joined = queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=me)
    assert joined.state == S.QUEUE_ENTRY_STATE_WAITING
    assert joined.position >= 2

    seen = []
    for entry in queue.WatchQueue(S.WatchQueueRequest(event_id=event_id), metadata=me, timeout=60):
        seen.append(entry)
    states = [e.state for e in seen]
    positions = [e.position for e in seen if e.state == S.QUEUE_ENTRY_STATE_WAITING]
    assert states[-1] == S.QUEUE_ENTRY_STATE_ADMITTED
    assert len(positions) >= 2 and positions == sorted(positions, reverse=True)
    assert len(set(positions)) == len(positions)  # only changes are pushed
    assert all(e.estimated_wait.seconds <= e.position + 2 for e in seen[:-1])

    # The admission is a token for this buyer and this event only.
    admitted = seen[-1].admission
    expires = admission.verify(key, admitted.token, user_id=watcher, event_id=event_id)
    assert abs(expires.timestamp() - ms(admitted.expire_time) / 1000) < 1
    for user_id, event in (("someone-else", event_id), (watcher, other_event)):
        with pytest.raises(PermissionDenied) as refused:
            admission.verify(key, admitted.token, user_id=user_id, event_id=event)
        assert refused.value.reason == "NOT_ADMITTED"

    # Watching again after the admission returns it at once.
    again = list(queue.WatchQueue(S.WatchQueueRequest(event_id=event_id), metadata=me, timeout=10))
    assert [e.state for e in again] == [S.QUEUE_ENTRY_STATE_ADMITTED]


def test_many_watchers_over_the_gateway_each_get_their_own_admission(stack, catalog, key):
    operator = (("authorization", f"Bearer {stack.token('ops-watch', role='operator')}"),)
    event_id = queue_event(catalog, operator, open_in=-60, rate=1200)
    users = [f"w{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(40)]

    async def watch(stub, user):
        me = as_user(stack, user)
        await stub.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=me)
        last = None
        async for entry in stub.WatchQueue(
            S.WatchQueueRequest(event_id=event_id), metadata=me, timeout=60
        ):
            last = entry
        return last

    async def main():
        async with grpc.aio.insecure_channel(stack.gateway) as ch:
            stub = queue_pb2_grpc.QueueServiceStub(ch)
            return await asyncio.gather(*(watch(stub, u) for u in users))

    finals = asyncio.run(main())
    for user, final in zip(users, finals, strict=True):
        assert final.state == S.QUEUE_ENTRY_STATE_ADMITTED, user
        admission.verify(key, final.admission.token, user_id=user, event_id=event_id)


# --- Joining, leaving, errors -----------------------------------------------------------------


@pytest.fixture
def paused_event(catalog, queue, operator):
    event_id = queue_event(catalog, operator, open_in=-60, rate=600)
    queue.UpdateQueueControl(
        S.UpdateQueueControlRequest(event_id=event_id, paused=True), metadata=operator
    )
    return event_id


def test_joining_twice_returns_the_same_entry(stack, queue, paused_event):
    alice = as_user(stack, f"alice-{uuid.uuid4().hex[:6]}")
    first = queue.JoinQueue(S.JoinQueueRequest(event_id=paused_event), metadata=alice)
    time.sleep(1.1)
    again = queue.JoinQueue(S.JoinQueueRequest(event_id=paused_event), metadata=alice)
    assert (again.state, again.position, again.join_time) == (
        first.state,
        first.position,
        first.join_time,
    )
    assert again.queue_length == first.queue_length == 1
    assert not again.HasField("estimated_wait")  # no estimate while paused


def test_leaving_moves_the_line_and_rejoining_goes_to_the_back(stack, queue, paused_event):
    users = [as_user(stack, f"{name}-{uuid.uuid4().hex[:6]}") for name in ("a", "b", "c")]
    request = S.JoinQueueRequest(event_id=paused_event)
    assert [queue.JoinQueue(request, metadata=u).position for u in users] == [1, 2, 3]
    left = queue.LeaveQueue(S.LeaveQueueRequest(event_id=paused_event), metadata=users[1])
    assert left.state == S.QUEUE_ENTRY_STATE_LEFT
    position = S.GetQueuePositionRequest(event_id=paused_event)
    assert queue.GetQueuePosition(position, metadata=users[2]).position == 2
    assert queue.GetQueuePosition(position, metadata=users[1]).state == S.QUEUE_ENTRY_STATE_LEFT
    back = queue.JoinQueue(request, metadata=users[1])
    assert (back.state, back.position, back.queue_length) == (S.QUEUE_ENTRY_STATE_WAITING, 3, 3)


def test_operators_pause_resume_and_change_the_rate(stack, queue, catalog, operator):
    event_id = queue_event(catalog, operator, open_in=-60, rate=600)
    control = S.UpdateQueueControlRequest
    paused = queue.UpdateQueueControl(control(event_id=event_id, paused=True), metadata=operator)
    assert paused.paused
    for i in range(30):
        queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=as_user(stack, f"p{i}"))
    stats_request = S.GetQueueStatsRequest(event_id=event_id)
    time.sleep(1.0)
    stats = queue.GetQueueStats(stats_request, metadata=operator)
    assert (stats.waiting, stats.admitted_total, stats.paused) == (30, 0, True)

    resumed = queue.UpdateQueueControl(
        control(
            event_id=event_id, paused=False, admission_rate_per_minute=1200, max_active_users=7
        ),
        metadata=operator,
    )
    assert (resumed.paused, resumed.admission_rate_per_minute, resumed.max_active_users) == (
        False,
        1200,
        7,
    )
    stats = wait_for(
        lambda: (
            (s := queue.GetQueueStats(stats_request, metadata=operator)).admitted_total >= 7 and s
        ),
        timeout=10,
    )
    time.sleep(1.0)
    stats = queue.GetQueueStats(stats_request, metadata=operator)
    # The cap on active admissions holds the rest back.
    assert (stats.admitted_total, stats.active, stats.waiting) == (7, 7, 23)
    assert stats.admitted_last_minute == 7


def test_queue_controls_are_for_operators_only(stack, queue, paused_event):
    alice = as_user(stack, "alice")
    for call, request in (
        (queue.GetQueueStats, S.GetQueueStatsRequest(event_id=paused_event)),
        (
            queue.UpdateQueueControl,
            S.UpdateQueueControlRequest(event_id=paused_event, paused=False),
        ),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=alice)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(err.value) == "OPERATOR_REQUIRED"


def test_an_invalid_rate_is_refused(queue, operator, paused_event):
    with pytest.raises(grpc.RpcError) as err:
        queue.UpdateQueueControl(
            S.UpdateQueueControlRequest(event_id=paused_event, admission_rate_per_minute=0),
            metadata=operator,
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("event_id", "code", "reason"),
    [
        (EVENT_WITHOUT_QUEUE, grpc.StatusCode.FAILED_PRECONDITION, "QUEUE_NOT_ENABLED"),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND, "EVENT_NOT_FOUND"),
        ("not-an-id", grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_ID"),
    ],
)
def test_joining_what_has_no_queue_says_why(stack, queue, event_id, code, reason):
    with pytest.raises(grpc.RpcError) as err:
        queue.JoinQueue(S.JoinQueueRequest(event_id=event_id), metadata=as_user(stack, "alice"))
    assert (err.value.code(), error_reason(err.value)) == (code, reason)


def test_a_buyer_not_in_line_is_told_so(stack, queue, paused_event):
    stranger = as_user(stack, f"stranger-{uuid.uuid4().hex[:6]}")
    for call, request in (
        (queue.GetQueuePosition, S.GetQueuePositionRequest(event_id=paused_event)),
        (queue.LeaveQueue, S.LeaveQueueRequest(event_id=paused_event)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(request, metadata=stranger)
        assert (err.value.code(), error_reason(err.value)) == (
            grpc.StatusCode.NOT_FOUND,
            "NOT_IN_QUEUE",
        )
    with pytest.raises(grpc.RpcError) as err:
        next(iter(queue.WatchQueue(S.WatchQueueRequest(event_id=paused_event), metadata=stranger)))
    assert error_reason(err.value) == "NOT_IN_QUEUE"


def test_the_queue_needs_a_signed_in_buyer(queue, paused_event):
    with pytest.raises(grpc.RpcError) as err:
        queue.JoinQueue(S.JoinQueueRequest(event_id=paused_event))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
