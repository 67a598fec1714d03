"""Search use cases: a page of results and search-as-you-type, over the event index.

The request is read in ``search_svc.request``, the engine's query built in ``search_svc.query``,
its answer read in ``search_svc.results``, the paging rules are in ``search_svc.domain``; the
engine is a port (``search_svc.ports``). This layer puts them in order: resolve where distances
are measured from, ask the engine, cut the page and make its token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from search_svc.domain import SearchQuery, Sort, decode_token, encode_token
from search_svc.ports import Engine
from search_svc.query import search_body, suggest_body
from search_svc.results import SearchPage, Suggestion, read_page, suggestions
from ticketing_common.errors import InvalidArgument


@dataclasses.dataclass(frozen=True, slots=True)
class ResultPage:
    page: SearchPage
    next_page_token: str


class EventSearch:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def search(
        self, query: SearchQuery, *, page_size: int, page_token: str, timeout: float
    ) -> ResultPage:
        after = decode_token(query, page_token)
        origin = query.point
        if query.sort is Sort.DISTANCE and origin is None:
            origin = await self._engine.city_location(query.city, timeout=timeout)
            if origin is None:
                raise InvalidArgument(
                    f"no venue is known in {query.city!r}: give coordinates to sort by distance",
                    metadata={"field": "location"},
                )
        body = search_body(query, size=page_size + 1, now=_now(), after=after, origin=origin)
        response = await self._engine.search(body, timeout=timeout)
        page = read_page(response, query, limit=page_size, origin=origin, after=after)
        token = encode_token(query, page.next_key) if page.next_key else ""
        return ResultPage(page, token)

    async def suggest(self, prefix: str, *, size: int, timeout: float) -> list[Suggestion]:
        body = suggest_body(prefix, size=size, now=_now())
        response = await self._engine.search(body, timeout=timeout)
        sources = [h.get("_source", {}) for h in response.get("hits", {}).get("hits", [])]
        return suggestions(prefix, sources, size)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
