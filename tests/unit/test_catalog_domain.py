import datetime as dt

import pytest

from catalog_svc.domain import (
    Event,
    QueuePolicy,
    Row,
    SeatMap,
    Section,
    Ticket,
    decode_page_token,
    encode_page_token,
    ensure_no_inventory,
    generate_inventory,
    next_hold_expiry,
    page_size,
    parse_id,
    query_fingerprint,
    summarize,
)
from ticketing_common.errors import FailedPrecondition, InvalidArgument

NOW = dt.datetime(2026, 12, 1, 20, tzinfo=dt.UTC)
MAP = SeatMap(
    (
        Section("Floor", "premium", (Row("A", 3), Row("B", 2))),
        Section("Balcony", "standard", (Row("1", 4),)),
    )
)


def _ticket(status: str, price: int = 5000, expires: dt.datetime | None = None) -> Ticket:
    return Ticket("id", "Floor", "A", "1", price, status, expires)


def test_malformed_ids_are_invalid_argument_with_reason():
    with pytest.raises(InvalidArgument) as err:
        parse_id("not-a-uuid", "event_id")
    assert err.value.reason == "MALFORMED_ID"
    assert err.value.metadata == {"field": "event_id"}
    assert parse_id("6F9619FF-8B86-D011-B42D-00C04FC964FF", "x") == (
        "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    )


def test_page_token_round_trips_and_refuses_another_query():
    q1, q2 = query_fingerprint("events", "concert"), query_fingerprint("events", "sports")
    token = encode_page_token(q1, ["2026-12-01T20:00:00+00:00", "abc"])
    assert decode_page_token(token, q1) == ["2026-12-01T20:00:00+00:00", "abc"]
    assert decode_page_token("", q1) is None
    for bad_token, query in ((token, q2), ("garbage!", q1), ("e30", q1)):
        with pytest.raises(InvalidArgument) as err:
            decode_page_token(bad_token, query)
        assert err.value.reason == "INVALID_PAGE_TOKEN"


def test_page_size_defaults_and_caps():
    assert page_size(0, default=50, maximum=500) == 50
    assert page_size(10_000, default=50, maximum=500) == 500
    with pytest.raises(InvalidArgument):
        page_size(-1, default=50, maximum=500)


def test_summary_counts_and_cheapest_available_price():
    summary = summarize(
        [
            _ticket("available", 9000),
            _ticket("available", 4500),
            _ticket("held", 100),
            _ticket("booked", 50),
        ]
    )
    assert (summary.total, summary.available, summary.held, summary.booked) == (4, 2, 1, 1)
    assert summary.min_available_price_minor == 4500
    assert not summary.sold_out
    sold = summarize([_ticket("booked"), _ticket("held")])
    assert sold.sold_out and sold.min_available_price_minor is None


def test_next_hold_expiry_is_the_earliest_live_hold():
    later, sooner = NOW + dt.timedelta(minutes=9), NOW + dt.timedelta(minutes=2)
    tickets = [_ticket("held", expires=later), _ticket("held", expires=sooner), _ticket("booked")]
    assert next_hold_expiry(tickets) == sooner
    assert next_hold_expiry([_ticket("available")]) is None


def test_inventory_has_one_ticket_per_seat_priced_by_tier():
    tickets = generate_inventory(MAP, {"premium": 12000, "standard": 4000})
    assert len(tickets) == MAP.capacity == 9
    assert {(t.section, t.row, t.seat) for t in tickets} >= {
        ("Floor", "A", "3"),
        ("Balcony", "1", "4"),
    }
    assert {t.price_minor for t in tickets if t.section == "Floor"} == {12000}


def test_inventory_needs_a_price_for_every_tier():
    with pytest.raises(InvalidArgument, match="standard"):
        generate_inventory(MAP, {"premium": 12000})
    with pytest.raises(InvalidArgument, match="negative"):
        generate_inventory(MAP, {"premium": -1, "standard": 1})


def test_inventory_is_generated_only_once():
    with pytest.raises(FailedPrecondition) as err:
        ensure_no_inventory(20)
    assert err.value.reason == "TICKETS_ALREADY_GENERATED"


@pytest.mark.parametrize(
    "seat_map",
    [
        SeatMap(()),
        SeatMap((Section("A", "x", (Row("1", 1),)), Section("A", "x", (Row("1", 1),)))),
        SeatMap((Section("A", "x", (Row("1", 0),)),)),
        SeatMap((Section("A", "", (Row("1", 5),)),)),
    ],
)
def test_seat_map_validation_rejects_broken_maps(seat_map):
    with pytest.raises(InvalidArgument):
        seat_map.validate()


def _event(**changes) -> Event:
    base = dict(
        id="",
        name="Show",
        description="",
        type="concert",
        venue_id="v",
        performer_id="p",
        start_time=NOW,
        end_time=NOW + dt.timedelta(hours=2),
        on_sale_time=NOW - dt.timedelta(days=30),
        queue_policy=QueuePolicy(),
        max_tickets_per_user=8,
        currency="USD",
    )
    base.update(changes)
    return Event(**base)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": " "}, "name"),
        ({"type": "opera"}, "type"),
        ({"end_time": NOW - dt.timedelta(hours=1)}, "end_time"),
        ({"on_sale_time": NOW + dt.timedelta(days=1)}, "on_sale_time"),
        ({"currency": "usd"}, "currency_code"),
        ({"max_tickets_per_user": 0}, "max_tickets_per_user"),
        (
            {"queue_policy": QueuePolicy(enabled=True, admission_rate_per_minute=0)},
            "queue_policy.admission_rate_per_minute",
        ),
    ],
)
def test_event_validation_names_the_field(changes, field):
    with pytest.raises(InvalidArgument) as err:
        _event(**changes).validate()
    assert err.value.metadata["field"] == field


def test_a_valid_event_passes():
    _event().validate()
