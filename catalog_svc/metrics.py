"""The catalog service's own metrics (the gRPC server's are in ticketing_common.metrics)."""

from __future__ import annotations

from prometheus_client import Gauge

# Summed over the worker processes of the service (prometheus_client's multiprocess mode).
AVAILABILITY_WATCHERS = Gauge(
    "ticketing_availability_watchers",
    "Open WatchAvailability streams.",
    multiprocess_mode="livesum",
)
