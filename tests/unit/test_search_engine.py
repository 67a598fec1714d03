"""The engine adapter and the search use cases, without a real engine: plain JSON on the wire
(against a tiny HTTP server that refuses versioned media types like the embedded engine),
failing fast while the engine is down, and a search page over a fake engine."""

import http.server
import json
import threading
from typing import ClassVar

import pytest

from search_svc.adapters.engine import Breaker, EventIndex, _plain, connect
from search_svc.domain import GeoPoint, Sort
from search_svc.request import parse_search
from search_svc.service import EventSearch
from ticketing_common.errors import InvalidArgument, Unavailable


class _StrictHandler(http.server.BaseHTTPRequestHandler):
    """Answers like an OpenSearch node: 406 to the client's versioned media types."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # the root endpoint: who it is
        self._reply(200, {"version": {"number": "3.0.0", "distribution": "opensearch"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        accept, content_type = self.headers.get("Accept", ""), self.headers.get("Content-Type", "")
        self.seen.append((accept, content_type))
        if "compatible-with" in accept or "compatible-with" in content_type:
            self._reply(406, {"error": "Content-Type header is not supported", "status": 406})
        else:
            self._reply(200, {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def strict_engine():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StrictHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_client_speaks_plain_json_to_an_engine_that_refuses_versioned_types(strict_engine):
    _StrictHandler.seen.clear()
    client = connect(strict_engine, request_timeout=2, engine="elasticsearch")
    response = client.search("events", {"query": {"match_all": {}}}, timeout=2)
    assert response["hits"]["total"]["value"] == 0
    assert _StrictHandler.seen == [("application/json", "application/json")]
    assert _plain("application/vnd.elasticsearch+x-ndjson; compatible-with=9") == (
        "application/x-ndjson"
    )
    assert _plain("text/plain") == "text/plain"


def test_auto_asks_the_engine_and_takes_the_opensearch_client(strict_engine):
    _StrictHandler.seen.clear()
    client = connect(strict_engine, request_timeout=2)  # auto
    response = client.search("events", {"query": {"match_all": {}}}, timeout=2)
    assert response["hits"]["total"]["value"] == 0
    assert client.engine == "opensearch"
    assert [content for _, content in _StrictHandler.seen] == ["application/json"]


def test_an_unknown_engine_is_refused_by_name():
    with pytest.raises(ValueError, match="engine must be one of auto, elasticsearch, opensearch"):
        connect("http://127.0.0.1:1", request_timeout=2, engine="solr")


@pytest.mark.parametrize("engine", ["auto", "elasticsearch", "opensearch"])
async def test_an_unreachable_engine_is_unavailable_at_once(engine):
    client = connect("http://127.0.0.1:1", request_timeout=2, engine=engine)
    index = EventIndex(client, threads=2)
    try:
        with pytest.raises(Unavailable) as err:
            await index.search({"query": {"match_all": {}}}, timeout=2)
        assert err.value.reason == "DEPENDENCY_UNAVAILABLE"
    finally:
        await index.close()


def test_the_breaker_refuses_while_open_and_lets_one_probe_through_after_the_cooldown():
    now = [0.0]
    breaker = Breaker(threshold=2, cooldown=1.0, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    now[0] = 1.5
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # ...and only one
    breaker.success()
    assert breaker.allow() and breaker.allow()


class FakeEngine:
    def __init__(self, responses, city=None):
        self.responses = list(responses)
        self.bodies = []
        self.city = city

    async def search(self, body, *, timeout):
        self.bodies.append(body)
        return self.responses.pop(0)

    async def city_location(self, city, *, timeout):
        return self.city


def _hits(*ids_and_sorts):
    hits = [
        {"_id": i, "_source": {"event_id": i, "name": i, "available_tickets": 1}, "sort": s}
        for i, s in ids_and_sorts
    ]
    return {"hits": {"total": {"value": len(hits)}, "hits": hits}}


async def test_a_page_asks_for_one_more_hit_and_its_token_resumes_after_the_last_shown():
    query = parse_search(
        term="", location="", radius_km=0, type="", date="", include_past=False, sort=None
    )
    engine = FakeEngine([_hits(("a", [1, "a"]), ("b", [2, "b"]), ("c", [3, "c"])), _hits()])
    search = EventSearch(engine)
    first = await search.search(query, page_size=2, page_token="", timeout=1)
    assert [h.event_id for h in first.page.hits] == ["a", "b"]
    assert engine.bodies[0]["size"] == 3
    second = await search.search(query, page_size=2, page_token=first.next_page_token, timeout=1)
    assert engine.bodies[1]["search_after"] == [2, "b"]
    assert second.next_page_token == ""


async def test_distance_from_a_city_needs_a_known_city():
    query = parse_search(
        term="", location="Atlantis", radius_km=0, type="", date="", include_past=False,
        sort=Sort.DISTANCE,
    )  # fmt: skip
    with pytest.raises(InvalidArgument) as err:
        await EventSearch(FakeEngine([])).search(query, page_size=5, page_token="", timeout=1)
    assert err.value.metadata == {"field": "location"}
    engine = FakeEngine([_hits()], city=GeoPoint(1.0, 2.0))
    await EventSearch(engine).search(query, page_size=5, page_token="", timeout=1)
    assert engine.bodies[0]["sort"][0]["_geo_distance"]["location"] == {"lat": 1.0, "lon": 2.0}
