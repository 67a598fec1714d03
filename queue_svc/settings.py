"""Settings of the queue service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import RedisSettings, SettingsError


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueSettings(RedisSettings):
    database_url: str
    # Signs admissions (HMAC); shared with booking_svc only.
    admission_key: str
    db_pool_size: int = 5
    # A buyer who neither watches nor polls for this long drops out (at most 1.5x later).
    queue_grace_seconds: float = 60.0
    # How often the admitter paces admissions, and how often watchers hear of changes.
    queue_admit_interval_seconds: float = 0.1
    queue_watch_interval_seconds: float = 1.0
    # How long the catalog's queue settings of an event are cached.
    queue_policy_cache_seconds: float = 2.0
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
