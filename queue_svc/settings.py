"""Settings of the queue service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import BaseSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class QueueSettings(BaseSettings):
    database_url: str
    redis_url: str
