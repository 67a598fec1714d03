"""Settings of the booking service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import RedisSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class BookingSettings(RedisSettings):
    database_url: str
    stripe_api_base: str
    stripe_api_key: str
    stripe_webhook_secret: str
    # Signs the waiting queue's admissions; shared with queue_svc only.
    admission_key: str
    db_pool_size: int = 30
    # How long a reservation holds its seats (the seed design's 10 minutes).
    hold_seconds: int = 600
    # Best available proposed from the process's picture of an event's free seats and held
    # through the single-seat path (issue 12); false: hold_best_available alone decides.
    best_available_picture: bool = True
    # Seconds after which a seat picture is read from Postgres again (in the background).
    best_available_refresh_seconds: float = 5.0
    # The write path of a sale: one process per core.
    workers: int = 2
