"""Settings of the queue service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import RedisSettings, SettingsError, env_name

# The queue asks the catalog for an event's policy (adapters/catalog.py): its peer is required.
CATALOG_SERVICE = "ticketing.catalog.v1.CatalogService"


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueSettings(RedisSettings):
    # Signs admissions (HMAC); shared with booking_svc only.
    admission_key: str
    # A buyer who neither watches nor polls for this long drops out (at most 1.5x later).
    queue_grace_seconds: float = 60.0
    # How often the admitter paces admissions, and how often watchers hear of changes.
    queue_admit_interval_seconds: float = 0.1
    queue_watch_interval_seconds: float = 1.0
    # How long the catalog's queue settings of an event are cached; how much longer the last
    # answer serves while the catalog cannot answer; the deadline of one catalog call.
    queue_policy_cache_seconds: float = 2.0
    queue_policy_stale_seconds: float = 30.0
    queue_catalog_timeout_seconds: float = 2.0
    # Buyer records are spread over this many Redis hashes; never change it on a live queue.
    queue_user_buckets: int = 4096

    def validate(self) -> None:
        super().validate()
        if self.queue_grace_seconds < 1:
            raise SettingsError("TICKETING_QUEUE_GRACE_SECONDS must be at least 1")
        if not 0 < self.queue_admit_interval_seconds <= 1:
            raise SettingsError("TICKETING_QUEUE_ADMIT_INTERVAL_SECONDS must be in (0, 1]")
        if self.queue_watch_interval_seconds <= 0:
            raise SettingsError("TICKETING_QUEUE_WATCH_INTERVAL_SECONDS must be positive")
        if self.queue_user_buckets < 1:
            raise SettingsError("TICKETING_QUEUE_USER_BUCKETS must be positive")
        if self.queue_policy_stale_seconds < 0:
            raise SettingsError("TICKETING_QUEUE_POLICY_STALE_SECONDS must not be negative")
        if self.queue_catalog_timeout_seconds <= 0:
            raise SettingsError("TICKETING_QUEUE_CATALOG_TIMEOUT_SECONDS must be positive")
        if CATALOG_SERVICE not in self.peers:
            raise SettingsError(
                f"{env_name('peers')} must name {CATALOG_SERVICE}=host:port: the queue asks the "
                "catalog for each event's queue settings"
            )
