"""Settings of the catalog service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import RedisSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class CatalogSettings(RedisSettings):
    database_url: str
    db_pool_size: int = 20
    # WatchAvailability sends an event's watchers at most one update per this many seconds.
    availability_coalesce_seconds: float = 0.25
    # ... and the process sends its watchers (of all events) about this many messages a
    # second at most: with more watchers than budget * coalesce, the window grows (up to
    # 0.5 s, so a change still reaches everyone within the 1 s promise).
    availability_message_budget: float = 40_000.0
