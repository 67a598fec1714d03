"""Prometheus metrics every process shares the shape of.

The gRPC server's RED metrics carry the names the ecosystem's dashboards and alerts already use
(go-grpc-prometheus, py-grpc-prometheus): ``grpc_server_started_total``,
``grpc_server_handled_total`` and ``grpc_server_handling_seconds``, labelled by type, service,
method and (when handled) canonical code. ``ServiceInterceptor`` records them for every call, a
request that cannot be decoded included (under ``INVALID_ARGUMENT``).

The domain's own metrics are prefixed ``ticketing_`` and defined next to the code that counts
them (``booking_svc/metrics.py``...), from the helpers here. Labels stay bounded: a method, a
code, a reason from ``ticketing_common.errors.Reason``; never a user or a ticket.

A service serves ``/metrics`` on ``TICKETING_METRICS_LISTEN`` (loopback in the local stack; the
gateway never routes it). With ``TICKETING_WORKERS`` above 1 its processes share one port, so
they also share their figures: with ``PROMETHEUS_MULTIPROC_DIR`` set (the local stack sets it,
emptied at every start) every process writes its series there and the first one serves the sum
(prometheus_client's multiprocess mode; gauges say how they combine). Without it, the first
process serves only its own figures, and says so at start.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import prometheus_client
from prometheus_client import Counter, Histogram, multiprocess

log = logging.getLogger("ticketing.metrics")

# Seconds; from a cached page (sub-millisecond) to a payment (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

GRPC_STARTED = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, whatever their status.",
    (*_LABELS, "grpc_code"),
)
GRPC_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time the server took to handle an RPC, to its last message.",
    _LABELS,
    buckets=LATENCY_BUCKETS,
)


class CallMetrics:
    """The labelled series of one method, resolved once (a label lookup per call costs)."""

    __slots__ = ("_handled", "_handling", "_labels", "_started")

    def __init__(self, full_method: str, grpc_type: str) -> None:
        service, _, method = full_method.lstrip("/").rpartition("/")
        self._labels = (grpc_type, service, method)
        self._started = GRPC_STARTED.labels(*self._labels)
        self._handling = GRPC_HANDLING.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def started(self) -> None:
        self._started.inc()

    def handled(self, code: str, seconds: float) -> None:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = GRPC_HANDLED.labels(*self._labels, code)
        counter.inc()
        self._handling.observe(seconds)


class BoundedLabel:
    """Label values kept to a cap (event ids: an operator watches a handful of sales at a
    time); past the cap every new value is counted as ``other``, so a process that sees
    thousands of events keeps a bounded number of series."""

    OTHER = "other"

    def __init__(self, cap: int = 100) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap:
            return self.OTHER
        self._seen.add(value)
        return value


def outcome_of(exc: BaseException) -> str:
    """A bounded label for a failed call: the domain's reason, or ``ERROR``."""
    reason = getattr(exc, "reason", None)
    return str(getattr(reason, "value", None) or "ERROR")


def shared_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def serve(listen: str, *, workers: int = 1) -> int:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks one); returns the port."""
    host, _, port = listen.rpartition(":")
    registry = prometheus_client.REGISTRY
    if shared_directory():
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    elif workers > 1:
        log.warning(
            "%d workers without PROMETHEUS_MULTIPROC_DIR: /metrics counts this process only",
            workers,
        )
    server, _thread = prometheus_client.start_http_server(
        int(port), addr=host or "127.0.0.1", registry=registry
    )
    bound = int(server.server_address[1])
    log.info("metrics on http://%s:%d/metrics", host or "127.0.0.1", bound)
    return bound


def process_ended(pid: int) -> None:
    """Forget a finished process's live gauges (its counters stay in the sums)."""
    if shared_directory():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
