"""Fixtures the integration modules share: one gateway channel per module, its stubs, and a
Postgres connection. Each is module-scoped, so every module gets its own channel and connection.

A module may override one by defining a fixture of the same name (``test_catalog.py`` has its own
``channel`` with a larger receive limit, and the stubs here are then built on it); the
``operator`` credentials stay per module, each with a user of its own.
"""

import grpc
import psycopg
import pytest
from ticketing.catalog.v1 import catalog_pb2_grpc
from ticketing.search.v1 import search_pb2_grpc


@pytest.fixture(scope="module")
def channel(stack):
    with grpc.insecure_channel(stack.gateway) as ch:
        yield ch


@pytest.fixture(scope="module")
def catalog(channel):
    return catalog_pb2_grpc.CatalogServiceStub(channel)


@pytest.fixture(scope="module")
def search(channel):
    return search_pb2_grpc.SearchServiceStub(channel)


@pytest.fixture(scope="module")
def db(stack):
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        yield conn
