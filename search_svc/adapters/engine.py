"""The search engine adapter: Elasticsearch or OpenSearch, each through its official client,
behind one small interface (``EngineClient``) that the search service and the CDC worker share.

``connect()`` is the one place a client is made and configured:

* **Which engine.** ``engine="elasticsearch"`` uses the ``elasticsearch`` 9.x client,
  ``"opensearch"`` the ``opensearch-py`` 3.x client, ``"auto"`` (the default) asks the engine's
  root endpoint (``version.distribution``). ``TICKETING_SEARCH_ENGINE`` and
  ``ticketing up --search-engine`` choose. Neither client speaks to the other engine: the
  Elasticsearch client refuses a server without ``X-Elastic-Product`` (a real OpenSearch
  cluster), and OpenSearch answers 406 to its ``compatible-with=9`` media types.
* **Plain JSON for Elasticsearch's client.** ``PlainJsonNode`` sends the plain media types
  (``application/json``, ``application/x-ndjson``), which Elasticsearch 9 and OpenSearch-
  compatible engines (the embedded one) both accept.
* **Short timeouts, no retries in the client.** A search fails fast with UNAVAILABLE when the
  engine is unreachable, and the caller decides about retrying (the CDC worker retries for
  ever, a search does not).
* **One error vocabulary.** Each client's exceptions become ``EngineUnavailable`` (retry
  later), ``EngineMissing`` (no such index or alias) or ``EngineRefused`` (the engine said no).

The index settings and mappings (``search_svc.documents``) are valid for both engines. Where
the two APIs differ is only in this module: the create, bulk and alias calls take their bodies
differently (``opensearch-py`` takes ``body=``).

* **Credentials and the engine's CA.** An engine made by an operator (the OpenSearch
  operator, ECK) serves HTTPS with a certificate of its own CA and asks for basic auth.
  ``EngineAuth`` (from ``TICKETING_SEARCH_USERNAME``, ``TICKETING_SEARCH_PASSWORD`` or
  ``_PASSWORD_FILE`` and ``TICKETING_SEARCH_CA_FILE``; ``auth_from(settings)``) reaches both
  official clients and the ``auto`` probe of the root endpoint alike: the certificate is
  verified against that CA, never skipped.

Production: point ``TICKETING_SEARCH_URL`` at the cluster's load balancer.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import dataclasses
import functools
import json
import logging
import ssl
import threading
import time
import typing
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import ConnectionTimeout, HttpHeaders, Urllib3HttpNode
from elastic_transport import TransportError as TransportFailure
from elasticsearch import ApiError, Elasticsearch
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_errors

from search_svc.documents import ALIAS
from search_svc.domain import GeoPoint
from search_svc.query import city_lookup_body
from search_svc.results import location_of
from ticketing_common.errors import Unavailable
from ticketing_common.settings import SEARCH_ENGINES, SearchEngineSettings

log = logging.getLogger("search.engine")

ENGINES = SEARCH_ENGINES
_CITY_CACHE_SIZE = 1000
_JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}
_PLAIN_MEDIA_TYPES = {
    "application/vnd.elasticsearch+json": "application/json",
    "application/vnd.elasticsearch+x-ndjson": "application/x-ndjson",
}


# -- credentials -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EngineAuth:
    """Basic auth and the CA of the engine's HTTPS certificate; empty fields: not used."""

    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    ca_file: str = ""

    def elasticsearch_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.username:
            options["basic_auth"] = (self.username, self.password)
        if self.ca_file:
            options["ca_certs"] = self.ca_file
            options["verify_certs"] = True
        return options

    def opensearch_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.username:
            options["http_auth"] = (self.username, self.password)
        if self.ca_file:
            options["ca_certs"] = self.ca_file
            options["verify_certs"] = True
        return options

    def ssl_context(self) -> ssl.SSLContext | None:
        """For the root-endpoint probe: the system's trust, or only this CA when given."""
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def headers(self) -> dict[str, str]:
        if not self.username:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


NO_AUTH = EngineAuth()


def auth_from(settings: SearchEngineSettings) -> EngineAuth:
    """The credentials and CA a process's settings name (the password file is read here)."""
    return EngineAuth(
        username=settings.search_username,
        password=settings.search_password_value(),
        ca_file=settings.search_ca_file,
    )


# -- errors ------------------------------------------------------------------------------------


class EngineError(Exception):
    """Something the engine (or the way to it) said; ``status`` is its HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineUnavailable(EngineError):
    """The engine cannot answer now: unreachable, timed out, busy or failing (5xx, 429)."""


class EngineMissing(EngineError):
    """No such index or alias."""


class EngineRefused(EngineError):
    """The engine refused the request (4xx other than a missing index)."""


def is_unavailable(exc: BaseException) -> bool:
    """True for failures that mean "the engine cannot answer now" (retry later), as opposed
    to a request the engine refuses."""
    return isinstance(exc, EngineUnavailable)


def is_missing_index(exc: BaseException) -> bool:
    return isinstance(exc, EngineMissing)


def _classify(status: int | None, text: str, exc: BaseException) -> EngineError:
    message = f"{type(exc).__name__}: {text}"[:500]
    if status is None or status == 429 or status >= 500:
        return EngineUnavailable(message, status)
    if status == 404 and "index_not_found" in text:
        return EngineMissing(message, status)
    return EngineRefused(message, status)


# -- the interface -----------------------------------------------------------------------------


class EngineClient(Protocol):
    """What the platform asks of a search engine; one implementation per official client.
    Every method raises ``EngineError`` subclasses only."""

    engine: str

    def search(self, index: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]: ...
    def exists_alias(self, name: str) -> bool: ...
    def aliased(self, name: str) -> list[str]: ...
    def count(self, index: str) -> int: ...
    def indices(self, pattern: str) -> list[str]: ...
    def exists_index(self, name: str) -> bool: ...
    def create_index(
        self, name: str, settings: Mapping[str, Any], mappings: Mapping[str, Any]
    ) -> None: ...
    def delete_index(self, name: str) -> None: ...
    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None: ...
    def bulk(
        self, index: str, lines: Sequence[Mapping[str, Any]], *, require_alias: bool
    ) -> dict[str, Any]: ...
    def close(self) -> None: ...


# -- Elasticsearch -----------------------------------------------------------------------------


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


class _OfficialClient:
    """What both official clients say alike (their index and alias reads, deletes, close);
    the subclasses differ where the APIs do: the bodies of create, bulk and alias changes,
    searches, and the exceptions ``_call`` translates."""

    _client: Any

    def _call(self, action: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def exists_alias(self, name: str) -> bool:
        return bool(self._call(lambda: self._client.indices.exists_alias(name=name)))

    def aliased(self, name: str) -> list[str]:
        try:
            return list(self._call(lambda: self._client.indices.get_alias(name=name)))
        except EngineError as exc:
            if exc.status == 404:
                return []
            raise

    def count(self, index: str) -> int:
        return int(self._call(lambda: self._client.count(index=index))["count"])

    def indices(self, pattern: str) -> list[str]:
        return list(self._call(lambda: self._client.indices.get(index=pattern)))

    def exists_index(self, name: str) -> bool:
        return bool(self._call(lambda: self._client.indices.exists(index=name)))

    def delete_index(self, name: str) -> None:
        self._call(lambda: self._client.indices.delete(index=name))

    def close(self) -> None:
        self._client.close()


class ElasticsearchClient(_OfficialClient):
    engine = "elasticsearch"

    def __init__(
        self, url: str, *, request_timeout: float, connections: int, auth: EngineAuth = NO_AUTH
    ) -> None:
        self._client = Elasticsearch(
            url,
            node_class=PlainJsonNode,
            request_timeout=request_timeout,
            max_retries=0,
            retry_on_timeout=False,
            connections_per_node=connections,
            # Searches and bulk bodies are small and local; compression would only cost CPU.
            http_compress=False,
            **auth.elasticsearch_options(),
        )
        self._timed: dict[int, Elasticsearch] = {}

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except ApiError as exc:
            raise _classify(exc.meta.status, f"{exc.message} {exc.body}", exc) from exc
        except (TransportConnectionError, ConnectionTimeout, TransportFailure) as exc:
            raise _classify(None, str(exc), exc) from exc

    def _with_timeout(self, timeout: float) -> Elasticsearch:
        """The client with this request timeout (rounded down to a quarter second): making
        one with ``options()`` costs more than a search's own work in the client."""
        key = max(1, int(timeout * 4))
        client = self._timed.get(key)
        if client is None:
            client = self._timed[key] = self._client.options(request_timeout=key / 4)
        return client

    def search(self, index: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        client = self._with_timeout(timeout)
        response = self._call(
            lambda: client.perform_request(
                "POST", f"/{index}/_search", body=body, headers=_JSON_HEADERS
            )
        )
        return dict(response.body)

    def create_index(
        self, name: str, settings: Mapping[str, Any], mappings: Mapping[str, Any]
    ) -> None:
        self._call(
            lambda: self._client.indices.create(
                index=name, settings=dict(settings), mappings=dict(mappings)
            )
        )

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        self._call(lambda: self._client.indices.update_aliases(actions=list(actions)))

    def bulk(
        self, index: str, lines: Sequence[Mapping[str, Any]], *, require_alias: bool
    ) -> dict[str, Any]:
        response = self._call(
            lambda: self._client.bulk(
                index=index, operations=list(lines), require_alias=require_alias
            )
        )
        return dict(response.body)


# -- OpenSearch --------------------------------------------------------------------------------


class OpenSearchClient(_OfficialClient):
    engine = "opensearch"

    def __init__(
        self, url: str, *, request_timeout: float, connections: int, auth: EngineAuth = NO_AUTH
    ) -> None:
        self._client = OpenSearch(
            hosts=[url],
            timeout=request_timeout,
            max_retries=0,
            retry_on_timeout=False,
            pool_maxsize=connections,
            http_compress=False,
            **auth.opensearch_options(),
        )

    def _call(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except os_errors.TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            raise _classify(status, f"{exc.error} {exc.info}", exc) from exc

    def search(self, index: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        return dict(
            self._call(
                lambda: self._client.search(
                    index=index, body=body, params={"request_timeout": timeout}
                )
            )
        )

    def create_index(
        self, name: str, settings: Mapping[str, Any], mappings: Mapping[str, Any]
    ) -> None:
        body = {"settings": dict(settings), "mappings": dict(mappings)}
        self._call(lambda: self._client.indices.create(index=name, body=body))

    def update_aliases(self, actions: Sequence[Mapping[str, Any]]) -> None:
        body = {"actions": list(actions)}
        self._call(lambda: self._client.indices.update_aliases(body=body))

    def bulk(
        self, index: str, lines: Sequence[Mapping[str, Any]], *, require_alias: bool
    ) -> dict[str, Any]:
        params = {"require_alias": "true" if require_alias else "false"}
        return dict(
            self._call(lambda: self._client.bulk(body=list(lines), index=index, params=params))
        )


# -- choosing ----------------------------------------------------------------------------------


def detect(url: str, *, timeout: float = 5.0, auth: EngineAuth = NO_AUTH) -> str:
    """Which engine answers at ``url``: its root endpoint's ``version.distribution``
    (OpenSearch says ``opensearch``; Elasticsearch has none). Asked with the same
    credentials and CA as the clients."""
    request = urllib.request.Request(url.rstrip("/") + "/", headers=auth.headers())  # noqa: S310
    try:
        with urllib.request.urlopen(  # noqa: S310
            request, timeout=timeout, context=auth.ssl_context()
        ) as resp:
            root = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        raise EngineUnavailable(f"cannot ask {url} which engine it is: {exc}") from exc
    distribution = str(root.get("version", {}).get("distribution", "")).lower()
    return "opensearch" if distribution == "opensearch" else "elasticsearch"


class AutoClient:
    """The client for whichever engine answers, found at the first call that reaches it: a
    process starts even while the engine is still down, and its calls fail with
    ``EngineUnavailable`` until the engine answers."""

    def __init__(
        self, url: str, *, request_timeout: float, connections: int, auth: EngineAuth = NO_AUTH
    ) -> None:
        self._url = url
        self._request_timeout = request_timeout
        self._connections = connections
        self._auth = auth
        self._client: EngineClient | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> str:
        return self._client.engine if self._client is not None else "auto"

    def resolve(self) -> EngineClient:
        with self._lock:
            if self._client is None:
                found = detect(self._url, timeout=self._request_timeout, auth=self._auth)
                self._client = _client_for(
                    found,
                    self._url,
                    request_timeout=self._request_timeout,
                    connections=self._connections,
                    auth=self._auth,
                )
                log.info("search engine at %s is %s", self._url, found)
            return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _client_for(
    engine: str, url: str, *, request_timeout: float, connections: int, auth: EngineAuth
) -> Any:
    kind = OpenSearchClient if engine == "opensearch" else ElasticsearchClient
    return kind(url, request_timeout=request_timeout, connections=connections, auth=auth)


def connect(
    url: str,
    *,
    request_timeout: float,
    connections: int = 16,
    engine: str = "auto",
    auth: EngineAuth = NO_AUTH,
) -> EngineClient:
    """A client of the engine at ``url`` (see the module docstring)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    if engine == "auto":
        auto: Any = AutoClient(
            url, request_timeout=request_timeout, connections=connections, auth=auth
        )
        return typing.cast(EngineClient, auto)
    client: EngineClient = _client_for(
        engine, url, request_timeout=request_timeout, connections=connections, auth=auth
    )
    return client


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
        client: EngineClient,
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

    async def search(self, body: Mapping[str, Any], *, timeout: float) -> dict[str, Any]:
        """The engine's answer to a search body, or Unavailable."""
        if not self._breaker.allow():
            raise Unavailable("the search engine is not reachable right now")
        # In the caller's context: the engine call's span (tracing) and log lines (request id)
        # belong to the search that made it.
        call = functools.partial(contextvars.copy_context().run, self._search, dict(body), timeout)
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
        return self._client.search(self._alias, body, timeout=timeout)

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
