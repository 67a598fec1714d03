"""Settings of the CDC worker, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import BaseSettings


@dataclasses.dataclass(frozen=True, kw_only=True)
class CdcSettings(BaseSettings):
    database_url: str
    search_url: str
