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
