"""Settings of the search service, read from TICKETING_* variables (see CONTRIBUTING.md)."""

from __future__ import annotations

import dataclasses

from ticketing_common.settings import SearchEngineSettings, SettingsError


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSettings(SearchEngineSettings):
    # The longest a search waits for the engine (a shorter gRPC deadline wins). Short: when
    # the engine is slow or down, a fast UNAVAILABLE beats a hanging page.
    search_timeout_seconds: float = 3.0
    # Engine calls in flight at once (the client is synchronous and runs on a thread pool).
    search_engine_threads: int = 16

    def validate(self) -> None:
        super().validate()
        if not 0 < self.search_timeout_seconds <= 60:
            raise SettingsError("TICKETING_SEARCH_TIMEOUT_SECONDS must be in (0, 60]")
        if not 1 <= self.search_engine_threads <= 256:
            raise SettingsError("TICKETING_SEARCH_ENGINE_THREADS must be in 1..256")
