import datetime as dt
import uuid

import pytest

from booking_svc.domain import (
    MAX_TICKETS_PER_ORDER,
    BestSeatsOrder,
    HeldTicket,
    HoldOutcome,
    SaleWindow,
    best_seats_order,
    best_seats_refused,
    confirm_refused,
    ensure_payable,
    hold_refused,
    payment_idempotency_key,
    single_event,
    ticket_ids,
)
from ticketing_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
A, B = str(uuid.uuid4()), str(uuid.uuid4())


def test_ticket_ids_are_deduplicated_canonical_and_bounded():
    assert ticket_ids(A.upper(), [B, A]) == [A, B]
    assert ticket_ids("", [B]) == [B]
    with pytest.raises(InvalidArgument) as err:
        ticket_ids("seat-1", [])
    assert err.value.reason == "MALFORMED_ID"
    with pytest.raises(InvalidArgument):
        ticket_ids("", [])
    with pytest.raises(ResourceExhausted) as err:
        ticket_ids("", [str(uuid.uuid4()) for _ in range(MAX_TICKETS_PER_ORDER + 1)])
    assert err.value.reason == "LIMIT_EXCEEDED"


def _window(**changes) -> SaleWindow:
    base = dict(
        event_id="e",
        on_sale_time=NOW - dt.timedelta(days=1),
        start_time=NOW + dt.timedelta(days=1),
        queue_enabled=False,
        max_tickets_per_user=4,
    )
    base.update(changes)
    return SaleWindow(**base)


def test_sales_open_at_on_sale_time_and_close_at_start():
    _window().ensure_open(NOW)
    with pytest.raises(FailedPrecondition) as err:
        _window(on_sale_time=NOW + dt.timedelta(minutes=1)).ensure_open(NOW)
    assert err.value.reason == "SALE_NOT_OPEN"
    with pytest.raises(FailedPrecondition) as err:
        _window(start_time=NOW).ensure_open(NOW)
    assert err.value.reason == "SALE_CLOSED"


def test_the_per_user_cap_counts_what_is_already_held_or_owned():
    _window().ensure_within_limit(already_mine=2, requested_new=2)
    with pytest.raises(ResourceExhausted) as err:
        _window().ensure_within_limit(already_mine=3, requested_new=2)
    assert err.value.metadata == {"limit": "4", "already": "3"}


def test_an_order_is_for_one_event_of_existing_tickets():
    assert single_event(["e1", "e1"], 2, 2) == "e1"
    with pytest.raises(FailedPrecondition):
        single_event(["e1"], 2, 1)
    with pytest.raises(InvalidArgument):
        single_event(["e1", "e2"], 2, 2)


def _held(holder: str = "alice", expires: dt.datetime | None = None, status: str = "held"):
    return HeldTicket(A, "e", status, holder, expires or NOW + dt.timedelta(minutes=5), 5000, "EUR")


def test_only_the_holder_of_a_live_hold_may_pay():
    ensure_payable("alice", [_held()], 1, NOW)
    with pytest.raises(PermissionDenied) as err:
        ensure_payable("bob", [_held()], 1, NOW)
    assert err.value.reason == "NOT_HOLDER"
    with pytest.raises(PermissionDenied):
        ensure_payable("alice", [_held(status="booked")], 1, NOW)
    with pytest.raises(FailedPrecondition) as err:
        ensure_payable("alice", [_held(expires=NOW)], 1, NOW)
    assert err.value.reason == "HOLD_EXPIRED"


def test_a_confirm_the_store_refused_reads_as_the_rule_it_broke():
    assert confirm_refused("bob", [_held()], 1, NOW).reason == "NOT_HOLDER"
    assert confirm_refused("alice", [], 1, NOW).reason == "TICKET_NOT_FOUND"
    # The store's clock saw the hold lapse a moment before this process's clock does: expired.
    nearly = confirm_refused("alice", [_held(expires=NOW + dt.timedelta(milliseconds=5))], 1, NOW)
    assert nearly.reason == "HOLD_EXPIRED" and nearly.metadata == {"ticket_id": A}


def test_one_charge_per_booking_and_card():
    assert payment_idempotency_key("b1", "pm_a") == payment_idempotency_key("b1", "pm_a")
    assert payment_idempotency_key("b1", "pm_a") != payment_idempotency_key("b1", "pm_b")


def test_a_refusal_from_the_database_reads_as_the_rule_it_broke():
    window = _window(on_sale_time=NOW + dt.timedelta(hours=1))
    cases = {
        HoldOutcome.TICKET_NOT_FOUND: (FailedPrecondition, "TICKET_NOT_FOUND"),
        HoldOutcome.SALE_NOT_OPEN: (FailedPrecondition, "SALE_NOT_OPEN"),
        HoldOutcome.SALE_CLOSED: (FailedPrecondition, "SALE_CLOSED"),
        HoldOutcome.NOT_ADMITTED: (PermissionDenied, "NOT_ADMITTED"),
        HoldOutcome.LIMIT_EXCEEDED: (ResourceExhausted, "LIMIT_EXCEEDED"),
        HoldOutcome.TICKET_UNAVAILABLE: (FailedPrecondition, "TICKET_UNAVAILABLE"),
    }
    for outcome, (kind, reason) in cases.items():
        error = hold_refused(outcome, window, 2, [A, B], [A])
        assert isinstance(error, kind) and error.reason == reason, outcome
    assert isinstance(hold_refused(HoldOutcome.MIXED_EVENTS, None, 0, [A, B], []), InvalidArgument)
    assert hold_refused(HoldOutcome.TICKET_UNAVAILABLE, None, 0, [A, B], [A]).metadata == {
        "ticket_ids": B
    }
    with pytest.raises(FailedPrecondition) as err:  # the same words as the rule's own check
        window.ensure_open(NOW)
    assert str(err.value) == str(hold_refused(HoldOutcome.SALE_NOT_OPEN, window, 0, [A], []))
    with pytest.raises(ResourceExhausted) as limit:
        window.ensure_within_limit(4, 1)
    assert str(limit.value) == str(hold_refused(HoldOutcome.LIMIT_EXCEEDED, window, 4, [A], []))


def test_a_best_available_order_is_checked_and_canonical():
    order = best_seats_order(A.upper(), 2, " premium ", "")
    assert order == BestSeatsOrder(A, 2, "premium", None)
    assert best_seats_order(A, 2, "", " Floor ", seated_only=True) == BestSeatsOrder(
        A, 2, None, "Floor", seated_only=True
    )
    for quantity in (0, -1, MAX_TICKETS_PER_ORDER + 1):
        with pytest.raises(InvalidArgument) as err:
            best_seats_order(A, quantity, "", "")
        assert err.value.metadata["field"] == "quantity"
    with pytest.raises(InvalidArgument) as err:
        best_seats_order("nope", 2, "", "")
    assert err.value.reason == "MALFORMED_ID" and err.value.metadata["field"] == "event_id"


def test_a_refused_best_available_hold_names_the_field_or_the_seats_left():
    order = BestSeatsOrder(A, 3, "gold", "Z9")
    window = SaleWindow(A, NOW, NOW + dt.timedelta(days=1), False, 2)
    fields = {
        HoldOutcome.QUANTITY_OVER_LIMIT: "quantity",
        HoldOutcome.UNKNOWN_PRICE_TIER: "price_tier",
        HoldOutcome.UNKNOWN_SECTION: "section",
        HoldOutcome.STANDING_SECTION: "section",
    }
    for outcome, field in fields.items():
        error = best_seats_refused(outcome, order, window, 0, 0)
        assert isinstance(error, InvalidArgument) and error.metadata["field"] == field
    none_left = best_seats_refused(HoldOutcome.NO_ADJACENT_SEATS, order, window, 0, 5)
    assert isinstance(none_left, FailedPrecondition)
    assert none_left.reason == "NO_ADJACENT_SEATS" and none_left.metadata["seats_remaining"] == "5"
    assert best_seats_refused(HoldOutcome.TICKET_UNAVAILABLE, order, window, 0, 9).reason == (
        "TICKET_UNAVAILABLE"
    )
    assert isinstance(best_seats_refused(HoldOutcome.EVENT_NOT_FOUND, order, None, 0, 0), NotFound)
    limit = best_seats_refused(HoldOutcome.LIMIT_EXCEEDED, order, window, 1, 0)
    assert isinstance(limit, ResourceExhausted) and limit.reason == "LIMIT_EXCEEDED"
