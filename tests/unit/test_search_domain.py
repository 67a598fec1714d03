"""Search rules: validation (search_svc/request.py), the shape of the engine query (query.py),
page tokens (domain.py), results and completions (results.py)."""

import datetime as dt
import math

import pytest

from search_svc import domain
from search_svc.documents import EventDocument, city_key, parse_time
from search_svc.domain import GeoPoint, SearchQuery, Sort
from search_svc.query import MAX_FUZZY_WORDS, search_body, suggest_body
from search_svc.request import parse_prefix, parse_search, search_page_size
from search_svc.results import read_page, suggestions
from ticketing_common.errors import InvalidArgument

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


def parse(**fields) -> SearchQuery:
    request = {
        "term": "",
        "location": "",
        "radius_km": 0.0,
        "type": "",
        "date": "",
        "include_past": False,
        "sort": None,
    }
    return parse_search(**(request | fields))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"term": "x" * 10_000}, "term"),
        ({"location": "52.52,13.40", "radius_km": 1e9}, "radius_km"),
        ({"location": "52.52,13.40", "radius_km": -5}, "radius_km"),
        ({"location": "52.52,13.40", "radius_km": math.nan}, "radius_km"),
        ({"location": "52.52,13.40", "radius_km": math.inf}, "radius_km"),
        ({"location": "95,13"}, "location"),
        ({"location": "52.5,13.4,7"}, "location"),
        ({"location": "B" * 500}, "location"),
        ({"type": "opera"}, "type"),
        ({"date": "2026-12-10/2026-12-01"}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"date": "tomorrow"}, "date"),
        ({"sort": Sort.DISTANCE}, "sort"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(fields, field):
    with pytest.raises(InvalidArgument) as err:
        parse(**fields)
    assert err.value.reason == "INVALID_ARGUMENT"
    assert err.value.metadata == {"field": field}


def test_defaults_and_normalization():
    q = parse(term="  Jazz  ", location=" Zürich ", type="Concert", date="2026-12-05")
    assert (q.term, q.city, q.point, q.type, q.sort) == (
        "Jazz",
        "zurich",
        None,
        "concert",
        Sort.RELEVANCE,
    )
    assert q.radius_km == domain.DEFAULT_RADIUS_KM
    assert (q.start_from, q.start_before) == (
        dt.datetime(2026, 12, 5, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
    )
    assert parse().sort is Sort.DATE
    assert parse(sort=Sort.RELEVANCE).sort is Sort.DATE  # no term, no relevance
    near = parse(location="52.52, 13.40", radius_km=5, sort=Sort.DISTANCE)
    assert near.point == GeoPoint(52.52, 13.40) and near.radius_km == 5 and near.city == ""
    assert parse(location="Berlin", sort=Sort.DISTANCE).city == "berlin"
    assert parse(location="New+York").city == "new york"  # form-encoded space, REST
    assert parse(location="+52.5,+13.4").point == GeoPoint(52.5, 13.4)


def test_filters_are_in_filter_context_and_upcoming_is_the_default():
    q = parse(location="Berlin", type="concert", date="2026-12-05/2026-12-07")
    body = search_body(q, size=21, now=NOW)
    bool_query = body["query"]["bool"]
    assert "must" not in bool_query  # no term, no scoring
    assert bool_query["filter"] == [
        {"term": {"type": "concert"}},
        {"term": {"city_key": "berlin"}},
        {
            "range": {
                "start_time": {"gte": "2026-12-05T00:00:00.000Z", "lt": "2026-12-08T00:00:00.000Z"}
            }
        },
        {"range": {"start_time": {"gte": "2026-12-01T12:00:00.000Z"}}},
    ]
    past = search_body(parse(include_past=True), size=21, now=NOW)
    assert past["query"]["bool"]["filter"] == []
    assert body["sort"] == [{"start_time": "asc"}, {"event_id": "asc"}]
    assert body["aggs"]["type_facets"]["terms"]["field"] == "type"
    assert body["aggs"]["city_facets"]["terms"]["field"] == "city"
    assert body["track_total_hits"] == 10_000 and "highlight" not in body


def test_a_term_is_matched_exactly_and_with_bounded_fuzziness_on_the_names():
    body = search_body(parse(term="aurora vail"), size=21, now=NOW)
    (text,) = body["query"]["bool"]["must"]
    exact, fuzzy = text["bool"]["should"]
    assert exact["multi_match"]["fields"] == [
        "name^3",
        "performer_name^3",
        "venue_name^2",
        "description",
    ]
    assert "fuzziness" not in exact["multi_match"]
    assert fuzzy == {
        "match": {
            "names": {
                "query": "aurora vail",
                "fuzziness": "AUTO",
                "prefix_length": 1,
                "max_expansions": 20,
            }
        }
    }
    assert body["sort"][0] == {"_score": "desc"}
    assert set(body["highlight"]["fields"]) == {
        "name",
        "performer_name",
        "venue_name",
        "description",
    }
    long_term = " ".join(["word"] * (MAX_FUZZY_WORDS + 1))
    (only,) = search_body(parse(term=long_term), size=21, now=NOW)["query"]["bool"]["must"]
    assert "multi_match" in only  # too many words to fuzz: exact only


def test_coordinates_filter_by_radius_and_sort_by_distance():
    q = parse(location="52.52,13.40", radius_km=7.5, sort=Sort.DISTANCE)
    body = search_body(q, size=21, now=NOW, after=[1.5, 1, "e"])
    assert {"geo_distance": {"distance": "7.5km", "location": {"lat": 52.52, "lon": 13.4}}} in (
        body["query"]["bool"]["filter"]
    )
    assert body["sort"][0] == {
        "_geo_distance": {"location": {"lat": 52.52, "lon": 13.4}, "order": "asc", "unit": "km"}
    }
    assert body["search_after"] == [1.5, 1, "e"]
    city = parse(location="Berlin", sort=Sort.DISTANCE)
    origin = GeoPoint(52.5, 13.4)
    assert search_body(city, size=5, now=NOW, origin=origin)["sort"][0]["_geo_distance"]


def test_page_tokens_resume_the_same_query_only():
    q = parse(location="52.52,13.40", sort=Sort.DISTANCE)
    token = domain.encode_token(q, [2.5, 1_800_000_000_000, "e1"])
    assert domain.decode_token(q, token) == [2.5, 1_800_000_000_000, "e1"]
    assert domain.decode_token(q, "") is None
    other = parse(location="52.52,13.41", sort=Sort.DISTANCE)
    forged = domain.encode_token(q, ["not", "the", "shape", "!"])
    relevance = parse(term="jazz")
    assert domain.decode_token(relevance, domain.encode_token(relevance, [40])) == [40]
    bad_tokens = [(other, token), (q, "garbage!"), (q, forged)]
    bad_tokens += [(relevance, domain.encode_token(relevance, [n])) for n in (0, -1, 10_000)]
    for query, bad in bad_tokens:
        with pytest.raises(InvalidArgument) as err:
            domain.decode_token(query, bad)
        assert err.value.reason == "INVALID_PAGE_TOKEN"
    date_sorted = parse(location="Berlin")
    with pytest.raises(InvalidArgument):
        domain.decode_token(date_sorted, domain.encode_token(date_sorted, [True, "e1"]))


def test_relevance_pages_by_offset_and_other_orders_resume_after_the_last_key():
    relevance = search_body(parse(term="jazz"), size=21, now=NOW, after=[40])
    assert relevance["from"] == 40 and "search_after" not in relevance
    by_date = search_body(parse(), size=21, now=NOW, after=[5, "e"])
    assert by_date["search_after"] == [5, "e"] and "from" not in by_date
    near_the_end = search_body(parse(term="jazz"), size=21, now=NOW, after=[9_990])
    assert near_the_end["size"] == 10


def test_page_size_defaults_and_caps():
    assert search_page_size(0) == 20
    assert search_page_size(1000) == 100
    with pytest.raises(InvalidArgument):
        search_page_size(-1)


def _raw_hit(event_id: str, sort, **source):
    base = {
        "event_id": event_id,
        "name": f"Night {event_id}",
        "type": "concert",
        "start_time": "2026-12-05T20:00:00Z",
        "city": "Berlin",
        "location": {"lat": 52.5, "lon": 13.4},
        "currency": "EUR",
        "available_tickets": 3,
        "min_available_price_minor": 4500,
        "sold_out": False,
    }
    return {"_id": event_id, "_source": base | source, "sort": sort}


def test_a_page_of_results_with_facets_highlights_and_the_next_key():
    q = parse(term="night", location="52.52,13.40")
    response = {
        "hits": {
            "total": {"value": 3, "relation": "eq"},
            "hits": [
                _raw_hit("a", [2.0, 1, "a"])
                | {"highlight": {"name": ["<em>Night</em> a"], "names": ["x"]}},
                _raw_hit(
                    "b",
                    [1.0, 2, "b"],
                    available_tickets=0,
                    min_available_price_minor=None,
                    sold_out=True,
                ),
                _raw_hit("c", [0.5, 3, "c"]),
            ],
        },
        "aggregations": {
            "type_facets": {"buckets": [{"key": "concert", "doc_count": 3}]},
            "city_facets": {"buckets": [{"key": "Berlin", "doc_count": 3}]},
        },
    }
    page = read_page(response, q, limit=2, origin=None)
    assert [h.event_id for h in page.hits] == ["a", "b"]
    assert page.next_key == [2]  # relevance: the offset of the next result
    later = read_page(response, q, limit=2, origin=None, after=[40])
    assert later.next_key == [42]
    dated = {"hits": {"hits": [_raw_hit(i, [n, i]) for n, i in ((1, "a"), (2, "b"), (3, "c"))]}}
    by_date = read_page(dated, parse(location="Berlin"), limit=2, origin=None)
    assert by_date.next_key == [2, "b"]  # the last hit's sort values
    assert page.total == 3
    assert page.type_facets == [("concert", 3)] and page.city_facets == [("Berlin", 3)]
    first, second = page.hits
    assert first.highlights == {"name": ["<em>Night</em> a"]}  # only fields people read
    assert first.start_time == dt.datetime(2026, 12, 5, 20, tzinfo=dt.UTC)
    assert first.distance_km == pytest.approx(2.4, abs=0.2)
    assert second.sold_out and second.min_available_price_minor is None
    last = read_page(response, q, limit=3, origin=None)
    assert last.next_key is None


def test_distances():
    london, paris = GeoPoint(51.5074, -0.1278), GeoPoint(48.8566, 2.3522)
    assert domain.distance_km(london, paris) == pytest.approx(343.5, abs=1)
    assert domain.distance_km(london, london) == 0


def test_suggestions_complete_every_typed_word_and_come_once_each():
    sources = [
        {
            "event_id": "e1",
            "name": "Aurora Vale: Northern Lights",
            "performer_name": "Aurora Vale",
            "venue_name": "Wembley Stadium",
        },
        {
            "event_id": "e2",
            "name": "Aurora Vale: Encore",
            "performer_name": "Aurora Vale",
            "venue_name": "Zürich Arena",
        },
        {
            "event_id": "e3",
            "name": "Autumn Gala",
            "performer_name": "The Aurochs",
            "venue_name": "Aula",
        },
    ]
    found = suggestions("aur v", sources, limit=10)
    assert [(s.kind, s.text, s.event_id) for s in found] == [
        ("performer", "Aurora Vale", ""),
        ("event", "Aurora Vale: Northern Lights", "e1"),
        ("event", "Aurora Vale: Encore", "e2"),
    ]
    assert [s.text for s in suggestions("zur", sources, limit=10)] == ["Zürich Arena"]
    assert len(suggestions("a", sources, limit=2)) == 2
    body = suggest_body("aur v", size=8, now=NOW)
    assert body["query"]["bool"]["must"][0]["multi_match"]["operator"] == "and"
    assert body["query"]["bool"]["filter"] == [
        {"range": {"start_time": {"gte": "2026-12-01T12:00:00.000Z"}}}
    ]


@pytest.mark.parametrize("prefix", ["", "   ", "x" * 101, "!!"])
def test_a_bad_prefix_is_invalid_argument(prefix):
    with pytest.raises(InvalidArgument) as err:
        parse_prefix(prefix)
    assert err.value.metadata == {"field": "prefix"}


def test_the_document_a_worker_writes_is_what_search_reads():
    start = dt.datetime(2026, 12, 5, 20, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    doc = EventDocument(
        event_id="e1", name="Night", description="", type="concert", start_time=start,
        end_time=start, on_sale_time=start, currency="EUR", queue_enabled=False,
        performer_id="p", performer_name="Band", performer_genre="", venue_id="v",
        venue_name="Hall", city="São Paulo", region="", country_code="BR", latitude=-23.5,
        longitude=-46.6, time_zone="America/Sao_Paulo", available_tickets=0,
        min_available_price_minor=None,
    )  # fmt: skip
    source = doc.to_source()
    assert source["start_time"] == "2026-12-05T19:00:00Z"
    assert source["city_key"] == "sao paulo" == city_key("  SAO  PAULO ")
    assert source["sold_out"] is True and source["min_available_price_minor"] is None
    hit = read_page(
        {"hits": {"hits": [{"_id": "e1", "_source": source}]}}, parse(), limit=5, origin=None
    ).hits[0]
    assert (hit.city, hit.sold_out, hit.start_time) == ("São Paulo", True, start)
    assert parse_time(1_800_000_000_000) == dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC)
    assert parse_time("garbage") is None
