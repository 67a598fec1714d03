"""Search as its users see it, over documents the CDC worker keeps in step with Postgres: typo
tolerance, combined filters, stable paging, a rename showing within the one-second promise, a
sold-out event, bad input, search-as-you-type, REST.

Every query test runs twice, once per official client (``elasticsearch`` 9.x and
``opensearch-py`` 3.x): the ``search`` fixture is a search service of the module's own
(``python -m search_svc`` with ``TICKETING_SEARCH_ENGINE`` set) on the shared stack's engine, one
process per client, so neither path rots. The town is made once. The REST test goes through the
gateway (the stack's own search service, ``auto``); the CDC worker's writes through both clients
are in test_search_engine_clients.py."""

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from ticketing.catalog.v1 import catalog_pb2
from ticketing.common.v1 import common_pb2
from ticketing.search.v1 import search_pb2, search_pb2_grpc

pytestmark = pytest.mark.integration

# The promise: a change is searchable within 1 s. The margin covers the test's own polling
# and scheduling on a loaded 2-core machine, not a looser bound.
FRESHNESS_BOUND_S = 1.0
MEASUREMENT_MARGIN_S = 0.3
# Long enough for the worker's first backfill after the stack starts.
SETTLE_S = 30.0

TAG = uuid.uuid4().hex[:6]
CITY = f"Searchville {TAG}"
PERFORMER = "Marguerite Okonkwo"


ENGINES = ["elasticsearch", "opensearch"]


@pytest.fixture(scope="module", params=ENGINES)
def search(request, stack):
    """The search service speaking to the stack's engine through one official client."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{sock.getsockname()[1]}"
    env = os.environ | {
        "TICKETING_LISTEN": listen,
        "TICKETING_SEARCH_URL": stack.search_url,
        "TICKETING_SEARCH_ENGINE": request.param,
        "TICKETING_LOG_LEVEL": "WARNING",
        # A process of the test's own on the loopback, called only by the test.
        "TICKETING_PLAINTEXT": "true",
    }
    service = subprocess.Popen(
        [sys.executable, "-m", "search_svc"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        with grpc.insecure_channel(listen) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                assert service.poll() is None, service.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, f"search_svc ({request.param}) did not start"
                time.sleep(0.1)
            yield search_pb2_grpc.SearchServiceStub(channel)
    finally:
        service.terminate()
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(timeout=10)


@pytest.fixture(scope="module")
def operator(stack):
    return (("authorization", f"Bearer {stack.token('ops-search', role='operator')}"),)


def _ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def day() -> dt.date:
    """The town's concert day: 300 days from when the module's tests start (not from import)."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=300)).date()


@pytest.fixture(scope="module")
def town(catalog, operator, day):
    """Two venues in a city of their own, a performer with a name easy to misspell, and four
    events: concert and sports on ``day``, concert the day after, theater a week later."""

    def venue(name):
        return catalog.CreateVenue(
            catalog_pb2.CreateVenueRequest(
                venue=catalog_pb2.Venue(
                    name=name,
                    city=CITY,
                    country_code="EE",
                    location=common_pb2.GeoPoint(latitude=59.437, longitude=24.7536),
                    time_zone="Europe/Tallinn",
                    seat_map=catalog_pb2.SeatMap(
                        sections=[
                            catalog_pb2.Section(
                                name="Floor",
                                price_tier="standard",
                                rows=[catalog_pb2.Row(label="1", seat_count=5)],
                            )
                        ]
                    ),
                )
            ),
            metadata=operator,
        )

    hall, arena = venue(f"Harbour Hall {TAG}"), venue(f"Old Town Arena {TAG}")
    performer = catalog.CreatePerformer(
        catalog_pb2.CreatePerformerRequest(
            performer=catalog_pb2.Performer(name=PERFORMER, genre="jazz")
        ),
        metadata=operator,
    )
    events = {}
    for key, venue_id, type_, start in (
        ("concert", hall.id, catalog_pb2.EVENT_TYPE_CONCERT, _at(day, 19)),
        ("sports", arena.id, catalog_pb2.EVENT_TYPE_SPORTS, _at(day, 15)),
        ("next_day", hall.id, catalog_pb2.EVENT_TYPE_CONCERT, _at(day + dt.timedelta(1), 19)),
        ("theater", arena.id, catalog_pb2.EVENT_TYPE_THEATER, _at(day + dt.timedelta(7), 19)),
    ):
        event = catalog.CreateEvent(
            catalog_pb2.CreateEventRequest(
                event=catalog_pb2.Event(
                    name=f"{PERFORMER}: Harbour Lights ({key} {TAG})",
                    type=type_,
                    venue_id=venue_id,
                    performer_id=performer.id,
                    start_time=_ts(start),
                    end_time=_ts(start + dt.timedelta(hours=2)),
                    currency_code="EUR",
                )
            ),
            metadata=operator,
        )
        catalog.GenerateTickets(
            catalog_pb2.GenerateTicketsRequest(
                event_id=event.id, tier_prices_minor={"standard": 2500}
            ),
            metadata=operator,
        )
        events[key] = event.id
    return events


def find(search, timeout: float = SETTLE_S, **request):
    """The first response whose events satisfy ``until`` (default: any), polling."""
    until = request.pop("until", lambda response: len(response.events) > 0)
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = search.SearchEvents(search_pb2.SearchEventsRequest(**request), timeout=10)
        except grpc.RpcError as err:  # the index may still be building
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        else:
            if until(response) or time.monotonic() > deadline:
                return response
        time.sleep(0.02)


def ids(response) -> list[str]:
    return [e.event_id for e in response.events]


def error_reason(err: grpc.RpcError) -> str:
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(err).details[0].Unpack(info)
    return info.reason


def test_a_misspelled_performer_name_finds_the_event(search, town):
    response = find(search, term="Margarite Okonkow", location=CITY, include_past=True)
    assert town["concert"] in ids(response)
    hit = next(e for e in response.events if e.event_id == town["concert"])
    assert hit.performer_name == PERFORMER and hit.city == CITY
    assert hit.available_tickets == 5 and not hit.sold_out
    assert hit.min_available_price.amount_minor == 2500
    assert hit.min_available_price.currency_code == "EUR"
    assert "<em>" in "".join(f for h in hit.highlights.values() for f in h.fragments)


def test_city_type_and_date_filters_combine(search, town, day):
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    concerts_on_day = find(search, location=CITY.upper(), type="concert", date=day.isoformat())
    assert ids(concerts_on_day) == [town["concert"]]
    both_days = search.SearchEvents(
        search_pb2.SearchEventsRequest(
            location=CITY, type="concert", date=f"{day}/{day + dt.timedelta(1)}"
        )
    )
    assert ids(both_days) == [town["concert"], town["next_day"]]  # soonest first
    on_day = search.SearchEvents(search_pb2.SearchEventsRequest(location=CITY, date=str(day)))
    assert ids(on_day) == [town["sports"], town["concert"]]
    assert {(f.value, f.count) for f in on_day.type_facets} == {("concert", 1), ("sports", 1)}
    assert [(f.value, f.count) for f in on_day.city_facets] == [(CITY, 2)]


def test_coordinates_and_radius_find_the_town_nearest_first(search, town):
    response = find(
        search,
        location="59.44,24.75",
        radius_km=5,
        sort=search_pb2.SEARCH_SORT_DISTANCE,
        page_size=100,
        until=lambda r: set(town.values()) <= set(ids(r)),
    )
    assert set(town.values()) <= set(ids(response))
    assert all(e.distance_km < 5 for e in response.events)
    far = search.SearchEvents(search_pb2.SearchEventsRequest(location="-33.9,18.4", radius_km=5))
    assert not set(town.values()) & set(ids(far))


def test_paging_is_stable_and_tokens_belong_to_their_query(search, town):
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    for sort in (search_pb2.SEARCH_SORT_DATE, search_pb2.SEARCH_SORT_RELEVANCE):
        seen, token = [], ""
        for _ in range(10):
            page = search.SearchEvents(
                search_pb2.SearchEventsRequest(
                    term="harbour lights", location=CITY, sort=sort, page_size=1, page_token=token
                )
            )
            seen += ids(page)
            token = page.next_page_token
            if not token:
                break
        everything = search.SearchEvents(
            search_pb2.SearchEventsRequest(term="harbour lights", location=CITY, sort=sort)
        )
        assert seen == ids(everything) and len(seen) == 4 and len(set(seen)) == 4
    first = search.SearchEvents(search_pb2.SearchEventsRequest(location=CITY, page_size=1))
    with pytest.raises(grpc.RpcError) as err:
        search.SearchEvents(
            search_pb2.SearchEventsRequest(
                location=CITY, type="concert", page_token=first.next_page_token
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err.value) == "INVALID_PAGE_TOKEN"


def test_a_renamed_event_is_found_under_its_new_name_within_a_second(
    search, catalog, operator, town
):
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    old_name = catalog.GetEvent(catalog_pb2.GetEventRequest(event_id=town["theater"])).name
    new_name = f"Midnight Lanterns {uuid.uuid4().hex[:8]}"

    def rename(name: str) -> None:
        catalog.UpdateEvent(
            catalog_pb2.UpdateEventRequest(
                event=catalog_pb2.Event(id=town["theater"], name=name),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=operator,
        )

    rename(new_name)
    renamed_at = time.monotonic()
    try:
        response = find(
            search,
            timeout=5,
            term=new_name,
            until=lambda r: ids(r)[:1] == [town["theater"]],
        )
        elapsed = time.monotonic() - renamed_at
    finally:
        # The town as it was, for the other tests (the module runs once per client).
        rename(old_name)
        find(search, timeout=10, term=old_name, until=lambda r: town["theater"] in ids(r))
    assert ids(response)[:1] == [town["theater"]]
    assert response.events[0].name == new_name
    assert elapsed < FRESHNESS_BOUND_S + MEASUREMENT_MARGIN_S, f"visible after {elapsed:.2f} s"


def test_a_sold_out_event_says_so(search, db, town):
    event_id = town["sports"]
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    db.execute(
        "UPDATE tickets SET status = 'held', holder_user_id = 'sellout',"
        " hold_expire_time = now() + interval '1 hour' WHERE event_id = %s",
        (event_id,),
    )
    try:

        def sold_out(response):
            return any(e.event_id == event_id and e.sold_out for e in response.events)

        response = find(search, timeout=5, location=CITY, until=sold_out)
        hit = next(e for e in response.events if e.event_id == event_id)
        assert hit.sold_out and hit.available_tickets == 0
        assert not hit.HasField("min_available_price")
    finally:
        db.execute(
            "UPDATE tickets SET status = 'available', holder_user_id = NULL,"
            " hold_expire_time = NULL WHERE event_id = %s",
            (event_id,),
        )
    back = find(
        search,
        timeout=5,
        location=CITY,
        until=lambda r: any(e.event_id == event_id and not e.sold_out for e in r.events),
    )
    assert next(e for e in back.events if e.event_id == event_id).available_tickets == 5


def test_past_events_only_when_asked(search, db, town):
    event_id = town["next_day"]
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    shift = "interval '900 days'"
    db.execute(
        f"UPDATE events SET on_sale_time = on_sale_time - {shift} - {shift},"
        f" start_time = start_time - {shift}, end_time = end_time - {shift} WHERE id = %s",
        (event_id,),
    )
    try:
        upcoming = find(search, timeout=5, location=CITY, until=lambda r: event_id not in ids(r))
        assert event_id not in ids(upcoming)
        everything = search.SearchEvents(
            search_pb2.SearchEventsRequest(location=CITY, include_past=True)
        )
        assert event_id in ids(everything)
    finally:
        db.execute(
            f"UPDATE events SET start_time = start_time + {shift},"
            f" end_time = end_time + {shift} WHERE id = %s",
            (event_id,),
        )
    find(search, timeout=5, location=CITY, until=lambda r: len(r.events) == 4)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"term": "x" * 10_240}, "term"),
        ({"location": "52.5,13.4", "radius_km": 1e7}, "radius_km"),
        ({"date": "2027-03-10/2027-03-01"}, "date"),
        ({"type": "opera"}, "type"),
        ({"location": "123,456"}, "location"),
        ({"sort": search_pb2.SEARCH_SORT_DISTANCE}, "sort"),
    ],
)
def test_bad_input_is_invalid_argument_with_a_reason(search, request_fields, field):
    with pytest.raises(grpc.RpcError) as err:
        search.SearchEvents(search_pb2.SearchEventsRequest(**request_fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(err.value) == "INVALID_ARGUMENT"
    info = error_details_pb2.ErrorInfo()
    rpc_status.from_call(err.value).details[0].Unpack(info)
    assert info.metadata["field"] == field


def test_search_as_you_type_completes_performers_venues_and_events(search, town):
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    reply = search.SuggestEvents(search_pb2.SuggestEventsRequest(prefix="margu okon"))
    kinds = {(s.kind, s.text) for s in reply.suggestions}
    assert ("performer", PERFORMER) in kinds
    events = [s for s in reply.suggestions if s.kind == "event"]
    assert events and all(s.event_id for s in events)
    venues = search.SuggestEvents(search_pb2.SuggestEventsRequest(prefix=f"old town arena {TAG}"))
    assert [(s.kind, s.text) for s in venues.suggestions] == [("venue", f"Old Town Arena {TAG}")]
    with pytest.raises(grpc.RpcError) as err:
        search.SuggestEvents(search_pb2.SuggestEventsRequest(prefix=""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def rest(stack, path: str, **params):
    url = f"http://{stack.gateway}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_seed_rest_api_searches_by_term_location_type_and_date(stack, search, town, day):
    find(search, location=CITY, until=lambda r: len(r.events) == 4)
    status, body = rest(
        stack, "/search", term="okonkwo", location=CITY, type="concert", date=str(day)
    )
    assert status == 200, body
    assert [e["eventId"] for e in body["events"]] == [town["concert"]], body
    assert body["events"][0]["minAvailablePrice"] == {"currencyCode": "EUR", "amountMinor": "2500"}
    status, body = rest(stack, "/search", date="2027-03-10/2027-03-01")
    assert status == 400 and body["details"][0]["reason"] == "INVALID_ARGUMENT"
    status, body = rest(stack, "/search/suggest", prefix="okonk")
    assert status == 200 and body["suggestions"]
