"""The search index as the CDC worker writes it (the client comes from
``search_svc.adapters.engine.connect``, the one place it is configured).

Every write is a bulk request of ``index``/``delete`` actions with ``version_type:
external_gte`` and the WAL position as version: the document id is the event id, so replaying
a batch (after a crash, before its position was confirmed) rewrites the same documents with the
same version, and an older write can never overwrite a newer one. Writes go through the alias
with ``require_alias``, so an engine that lost the index (the embedded one keeps nothing across
restarts) answers "no such alias" instead of silently creating an index with guessed mappings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cdc_worker.ports import AliasMissing, SinkUnavailable, WriteReport
from search_svc.adapters.engine import EngineClient, is_missing_index, is_unavailable
from search_svc.documents import ALIAS, INDEX_PREFIX, MAPPINGS, SETTINGS, EventDocument

log = logging.getLogger("cdc.index")

T = TypeVar("T")

VERSION_TYPE = "external_gte"


class EngineIndex:
    def __init__(self, client: EngineClient, *, alias: str = ALIAS, bulk_size: int = 1000) -> None:
        self._client = client
        self._alias = alias
        self._prefix = INDEX_PREFIX if alias == ALIAS else f"{alias}-v-"
        self._bulk_size = bulk_size

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except Exception as exc:
            if is_unavailable(exc):
                raise SinkUnavailable(str(exc) or type(exc).__name__) from exc
            if is_missing_index(exc):
                raise AliasMissing(str(exc)) from exc
            raise

    def alias_exists(self) -> bool:
        return self._call(lambda: self._client.exists_alias(self._alias))

    def document_count(self) -> int:
        return self._call(lambda: self._client.count(self._alias))

    def write(
        self, upserts: Sequence[EventDocument], deletes: Sequence[str], version: int
    ) -> WriteReport:
        operations = _index_operations(upserts, version)
        operations += [
            [{"delete": {"_id": event_id, "version": version, "version_type": VERSION_TYPE}}]
            for event_id in deletes
        ]
        return self._bulk(self._alias, operations, require_alias=True)

    def new_index(self) -> str:
        published = set(self._targets())
        for name in self._call(lambda: self._client.indices(f"{self._prefix}*")):
            if name not in published:
                log.info("dropping the unpublished index %s", name)
                self._call(lambda n=name: self._client.delete_index(n))  # type: ignore[misc]
        if not published and self._call(lambda: self._client.exists_index(self._alias)):
            # A concrete index squatting on the alias' name (a write without require_alias).
            log.warning("dropping the index %s that stands where the alias goes", self._alias)
            self._call(lambda: self._client.delete_index(self._alias))
        name = f"{self._prefix}{time.time_ns() // 1_000_000}"
        while name in published:
            name += "x"
        self._call(lambda: self._client.create_index(name, SETTINGS, MAPPINGS))
        return name

    def load(self, index: str, documents: Sequence[EventDocument], version: int) -> None:
        report = self._bulk(index, _index_operations(documents, version), require_alias=False)
        if report.rejected:
            log.error(
                "the engine refused %d document(s): %s", len(report.rejected), report.rejected[:5]
            )

    def publish(self, index: str) -> None:
        old = self._targets()
        changes: list[dict[str, Any]] = [
            {"remove": {"index": name, "alias": self._alias}} for name in old if name != index
        ]
        changes.append({"add": {"index": index, "alias": self._alias}})
        self._call(lambda: self._client.update_aliases(changes))
        for name in old:
            if name != index:
                self._call(lambda n=name: self._client.delete_index(n))  # type: ignore[misc]

    def _targets(self) -> list[str]:
        """The indices the alias points at now."""
        return self._call(lambda: self._client.aliased(self._alias))

    def _bulk(
        self, index: str, operations: list[list[dict[str, Any]]], *, require_alias: bool
    ) -> WriteReport:
        written = stale = 0
        rejected: list[tuple[str, str]] = []
        busy = False
        for start in range(0, len(operations), self._bulk_size):
            lines = [line for op in operations[start : start + self._bulk_size] for line in op]
            response = self._call(
                lambda body=lines: self._client.bulk(  # type: ignore[misc]
                    index, body, require_alias=require_alias
                )
            )
            for item in response["items"]:
                ((action, result),) = item.items()
                status = int(result.get("status", 500))
                error = result.get("error") or {}
                if status < 300 or (action == "delete" and status == 404 and not error):
                    written += 1
                elif status == 409:
                    stale += 1
                elif status == 404 and "index_not_found" in str(error.get("type", "")):
                    raise AliasMissing(str(error.get("reason", "no such index")))
                elif status == 429 or status >= 500:
                    busy = True
                else:
                    reason = str(error.get("reason", error))[:200]
                    rejected.append((str(result.get("_id")), reason))
        if busy:
            raise SinkUnavailable("the engine turned part of a bulk request away (busy or failing)")
        return WriteReport(written, stale, tuple(rejected))


def _index_operations(
    documents: Sequence[EventDocument], version: int
) -> list[list[dict[str, Any]]]:
    return [
        [
            {"index": {"_id": doc.event_id, "version": version, "version_type": VERSION_TYPE}},
            doc.to_source(),
        ]
        for doc in documents
    ]
