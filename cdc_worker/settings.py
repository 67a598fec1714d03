"""Settings of the CDC worker, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import SearchEngineSettings, SettingsError


@dataclasses.dataclass(frozen=True, kw_only=True)
class CdcSettings(SearchEngineSettings):
    database_url: str
    # The logical replication slot and the publication it streams (migration 0005).
    cdc_slot: str = "ticketing_search"
    cdc_publication: str = "ticketing_search"
    # Coalescing while the stream is busy: the longest a commit waits for company, and the
    # most events one batch may touch. An idle stream writes each commit at once.
    cdc_batch_max_seconds: float = 0.05
    cdc_batch_max_events: int = 2000
    # How often the replication status (lag, slot size) is logged.
    cdc_status_interval_seconds: float = 15.0
    # The longest one bulk request to the engine may take (then: retry, health NOT_SERVING).
    search_timeout_seconds: float = 5.0

    def validate(self) -> None:
        super().validate()
        if self.workers != 1:
            # One slot streams to one consumer; a second process would only stand by.
            raise SettingsError("TICKETING_WORKERS must be 1 for the CDC worker")
        if not 0 <= self.cdc_batch_max_seconds <= 10:
            raise SettingsError("TICKETING_CDC_BATCH_MAX_SECONDS must be in [0, 10]")
        if self.cdc_batch_max_events < 1:
            raise SettingsError("TICKETING_CDC_BATCH_MAX_EVENTS must be at least 1")
        if not self.cdc_slot.replace("_", "").isalnum() or not self.cdc_slot.islower():
            raise SettingsError("TICKETING_CDC_SLOT must be lower case letters, digits and _")
