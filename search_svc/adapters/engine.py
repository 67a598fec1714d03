"""The search engine adapter: the ``elasticsearch`` client, set up once for this platform.

``connect()`` is the one place the client is configured, for the search service and the CDC
worker alike:

* **Plain JSON.** The 9.x client sends ``Accept``/``Content-Type:
  application/vnd.elasticsearch+json; compatible-with=9`` on every request (REST API
  compatibility headers). Elasticsearch 9 accepts them; the embedded OpenSearch-compatible
  engine, like OpenSearch itself, answers 406. ``PlainJsonNode`` is the transport's HTTP node
  with one change: it sends the plain media types (``application/json``,
  ``application/x-ndjson``) the client would have sent before API versioning. Nothing else in
  the code base knows about this.
* **Short timeouts, no retries in the client.** A search fails fast with UNAVAILABLE when the
  engine is unreachable, and the caller decides about retrying (the CDC worker retries for
  ever, a search does not).

Production: point ``TICKETING_SEARCH_URL`` at the cluster's load balancer (or list the nodes and
turn sniffing on here). The client's product check accepts servers that answer with
``X-Elastic-Product: Elasticsearch`` (Elasticsearch itself, and the embedded engine); a real
OpenSearch cluster does not send it and needs the ``opensearch-py`` client behind this same
adapter interface. Index settings for production are in ``search_svc.documents``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, HttpHeaders, Urllib3HttpNode
from elastic_transport import TransportError as TransportFailure
from elasticsearch import ApiError, Elasticsearch

from search_svc.documents import ALIAS
from search_svc.domain import GeoPoint, city_lookup_body, location_of
from ticketing_common.errors import Unavailable

log = logging.getLogger("search.engine")

_CITY_CACHE_SIZE = 1000
_JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}
_PLAIN_MEDIA_TYPES = {
    "application/vnd.elasticsearch+json": "application/json",
    "application/vnd.elasticsearch+x-ndjson": "application/x-ndjson",
}


class PlainJsonNode(Urllib3HttpNode):
    """The urllib3 HTTP node, sending plain JSON media types instead of the versioned ones."""

    def perform_request(  # type: ignore[override]
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: HttpHeaders | None = None,
        **kwargs: Any,
    ) -> Any:
        if headers is not None:
            headers = headers.copy()
            for name in ("accept", "content-type"):
                value = headers.get(name)
                if value:
                    headers[name] = _plain(value)
        return super().perform_request(method, target, body=body, headers=headers, **kwargs)


def _plain(media_type: str) -> str:
    base = media_type.split(";", 1)[0].strip().lower()
    return _PLAIN_MEDIA_TYPES.get(base, media_type)


def connect(url: str, *, request_timeout: float, connections: int = 16) -> Elasticsearch:
    """A client of the engine at ``url`` that speaks plain JSON (see the module docstring)."""
    return Elasticsearch(
        url,
        node_class=PlainJsonNode,
        request_timeout=request_timeout,
        max_retries=0,
        retry_on_timeout=False,
        connections_per_node=connections,
        # Searches and bulk bodies are small and local; compression would only cost CPU.
        http_compress=False,
    )


def is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "the engine cannot answer now" (retry later), as opposed
    to a request the engine refuses."""
    if isinstance(exc, TransportConnectionError | ConnectionTimeout):
        return True
    if isinstance(exc, ApiError):
        return exc.meta.status in (429, 502, 503, 504) or exc.meta.status >= 500
    return isinstance(exc, TransportFailure)


def is_missing_index(exc: BaseException) -> bool:
    if not isinstance(exc, ApiError) or exc.meta.status != 404:
        return False
    return "index_not_found" in str(exc.message) or "index_not_found" in str(exc.body)


class Breaker:
    """Fail fast while the engine is known to be down: after ``threshold`` consecutive
    failures, calls are refused for ``cooldown`` seconds; then one call is let through to
    probe, and a success closes the breaker again. (With a refused connection every call
    fails in microseconds anyway; this matters when the engine hangs and calls would each
    wait for their timeout.)"""

    def __init__(
        self,
        *,
        threshold: int = 3,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self._failures < self._threshold:
                return True
            now = self._clock()
            if now >= self._open_until:
                self._open_until = now + self._cooldown  # let this one probe
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = 0.0

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._failures >= self._threshold:
                self._open_until = self._clock() + self._cooldown


class EventIndex:
    """Searches of the event index for the search service. The client is synchronous
    (urllib3); calls run on a small thread pool so the gRPC event loop never blocks."""

    def __init__(
        self,
        client: Elasticsearch,
        *,
        alias: str = ALIAS,
        threads: int = 16,
        breaker: Breaker | None = None,
    ) -> None:
        self._client = client
        self._alias = alias
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine")
        self._breaker = breaker or Breaker()
        self._cities: dict[str, tuple[float, GeoPoint | None]] = {}
        self._timed: dict[int, Elasticsearch] = {}
        self._search_path = f"/{alias}/_search"

    async def search(self, body: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
        """The engine's answer to a search body, or Unavailable."""
        if not self._breaker.allow():
            raise Unavailable("the search engine is not reachable right now")
        call = functools.partial(self._search, dict(body), timeout)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except Exception as exc:
            if is_missing_index(exc):
                self._breaker.success()
                raise Unavailable("the search index is being built; try again shortly") from exc
            if is_unavailable(exc):
                self._breaker.failure()
                log.warning("search engine unavailable: %s", exc)
                raise Unavailable("the search engine is not reachable right now") from exc
            raise
        self._breaker.success()
        return result

    def _search(self, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        response = self._client_with_timeout(timeout).perform_request(
            "POST", self._search_path, body=body, headers=_JSON_HEADERS
        )
        return dict(response.body)

    def _client_with_timeout(self, timeout: float) -> Elasticsearch:
        """The client with this request timeout (rounded down to a quarter second). Making
        one with ``options()`` costs more than a search's own work in the client, so they are
        kept."""
        key = max(1, int(timeout * 4))
        client = self._timed.get(key)
        if client is None:
            client = self._timed[key] = self._client.options(request_timeout=key / 4)
        return client

    async def city_location(self, city: str, *, timeout: float) -> GeoPoint | None:
        """Where a city is (a venue of it), or None for a city without venues. Cached for a
        minute: venues rarely move."""
        cached = self._cities.get(city)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        response = await self.search(city_lookup_body(city), timeout=timeout)
        hits = response.get("hits", {}).get("hits", [])
        point = location_of(hits[0].get("_source", {})) if hits else None
        if len(self._cities) >= _CITY_CACHE_SIZE:
            self._cities.clear()  # names come from clients: keep the cache bounded
        self._cities[city] = (time.monotonic() + 60.0, point)
        return point

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()
