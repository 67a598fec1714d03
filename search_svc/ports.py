"""What the search use cases need from the outside, as ports: the engine adapter implements
them (``search_svc.adapters.engine.EventIndex``) and the unit tests fake them
(``tests/unit/test_search_engine.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from search_svc.domain import GeoPoint


class Engine(Protocol):
    """The event index (Elasticsearch or OpenSearch); a failure is Unavailable."""

    async def search(self, body: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
        """The engine's answer to a query body (``search_svc.query``)."""
        ...

    async def city_location(self, city: str, *, timeout: float) -> GeoPoint | None:
        """Where a city (its ``city_key``) is: any one of its venues; None if none is known."""
        ...
