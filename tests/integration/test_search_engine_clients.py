"""Both official clients (elasticsearch 9.x and opensearch-py 3.x), behind the one adapter, against
the stack's real engine: what the CDC worker writes (a new index, versioned bulk writes, the alias
swap, replays, a missing alias) and what the search service reads come out the same whichever
client speaks. The rest of the search and CDC suites run through the client the stack picks
(auto: the embedded engine says it is OpenSearch)."""

import asyncio
import dataclasses
import datetime as dt
import json
import urllib.request
import uuid

import pytest

from cdc_worker.adapters.index import EngineIndex
from cdc_worker.ports import AliasMissing
from search_svc.adapters.engine import EventIndex, connect, detect
from search_svc.documents import EventDocument

pytestmark = pytest.mark.integration

ENGINES = ["elasticsearch", "opensearch"]


def document(name: str, available: int = 10) -> EventDocument:
    start = dt.datetime(2031, 5, 1, 20, tzinfo=dt.UTC)
    return EventDocument(
        event_id=str(uuid.uuid4()),
        name=name,
        description="an evening of tests",
        type="concert",
        start_time=start,
        end_time=start + dt.timedelta(hours=3),
        on_sale_time=start - dt.timedelta(days=30),
        currency="EUR",
        queue_enabled=False,
        performer_id=str(uuid.uuid4()),
        performer_name="The Adapters",
        performer_genre="rock",
        venue_id=str(uuid.uuid4()),
        venue_name="Test Hall",
        city="Lisbon",
        region="Lisboa",
        country_code="PT",
        latitude=38.72,
        longitude=-9.14,
        time_zone="Europe/Lisbon",
        available_tickets=available,
        min_available_price_minor=5000 if available else None,
    )


def test_the_embedded_engine_says_it_is_opensearch(stack):
    assert detect(stack.search_url) == "opensearch"


@pytest.mark.parametrize("engine", ENGINES)
def test_both_clients_write_swap_and_replay_the_index_alike(stack, engine):
    client = connect(stack.search_url, request_timeout=10, engine=engine)
    alias = f"clients-{engine}-{uuid.uuid4().hex[:8]}"
    index = EngineIndex(client, alias=alias)
    try:
        assert client.engine == engine
        assert not index.alias_exists()
        with pytest.raises(AliasMissing):
            index.write([document("nowhere")], [], version=1)

        first = index.new_index()
        docs = [document(f"Night {i}") for i in range(5)]
        index.load(first, docs, version=10)
        index.publish(first)
        assert index.alias_exists()
        assert index.document_count() == 5

        newer = dataclasses.replace(docs[0], available_tickets=0, min_available_price_minor=None)
        report = index.write([newer], [docs[1].event_id], version=20)
        assert (report.written, report.stale, report.rejected) == (2, 0, ())
        replay = index.write([newer], [docs[1].event_id], version=20)
        assert replay.stale + replay.written == 2 and replay.rejected == ()
        older = index.write([docs[0]], [], version=15)  # an older write never wins
        assert (older.written, older.stale) == (0, 1)
        assert index.document_count() == 4

        second = index.new_index()  # a rebuild: a new index, then the alias moves to it
        index.load(second, docs[2:], version=30)
        index.publish(second)
        assert index.document_count() == 3
        assert client.aliased(alias) == [second]
        assert client.indices(f"{alias}-v-*") == [second]  # the old one is gone
    finally:
        for name in client.indices(f"{alias}-v-*"):
            client.delete_index(name)
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_both_clients_create_the_index_with_the_production_settings(stack, engine):
    client = connect(stack.search_url, request_timeout=10, engine=engine)
    alias = f"clients-settings-{engine}-{uuid.uuid4().hex[:8]}"
    try:
        name = EngineIndex(client, alias=alias).new_index()
        request = urllib.request.Request(f"{stack.search_url}/{name}/_settings")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            got = json.loads(response.read())[name]["settings"]["index"]
        assert (got["number_of_shards"], got["auto_expand_replicas"]) == ("1", "0-1")
        assert got["refresh_interval"] == "500ms"
        analyzers = got["analysis"]["analyzer"]
        assert analyzers["folded"]["filter"] == ["lowercase", "asciifolding"]
        assert analyzers["prefixes"]["filter"] == ["lowercase", "asciifolding", "word_prefixes"]
    finally:
        for index in client.indices(f"{alias}-v-*"):
            client.delete_index(index)
        client.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_both_clients_search_alike(stack, engine):
    writer_client = connect(stack.search_url, request_timeout=10, engine=engine)
    alias = f"clients-search-{engine}-{uuid.uuid4().hex[:8]}"
    writer = EngineIndex(writer_client, alias=alias)
    reader = EventIndex(connect(stack.search_url, request_timeout=10, engine=engine), alias=alias)
    try:
        target = writer.new_index()
        writer.load(target, [document("Jazz at dawn"), document("Rock at noon")], version=1)
        writer.publish(target)
        body = {"query": {"match": {"name": "jazz"}}}
        for _ in range(50):  # searchable after the engine's refresh
            found = asyncio.run(reader.search(body, timeout=5))
            if found["hits"]["hits"]:
                break
            asyncio.run(asyncio.sleep(0.1))
        names = [hit["_source"]["name"] for hit in found["hits"]["hits"]]
        assert names == ["Jazz at dawn"]
    finally:
        for name in writer_client.indices(f"{alias}-v-*"):
            writer_client.delete_index(name)
        writer_client.close()
        asyncio.run(reader.close())
