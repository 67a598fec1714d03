"""OpenTelemetry tracing, set up once per process (``ticketing_common.server.run`` calls
``configure``), so every service and the CDC worker trace the same way.

On only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard variable, e.g.
``http://127.0.0.1:4318``): then spans go over OTLP/HTTP (protobuf) to ``<endpoint>/v1/traces``,
batched in a background thread, named after the component (``service.name``), and
- the gRPC server continues the caller's W3C ``traceparent`` (Envoy forwards it) with one server
  span per call (``server_interceptors``, installed by ``build_server``);
- Postgres (psycopg 3), Redis (redis-py, asyncio included), HTTP through urllib3 (the search
  engine clients) and through aiohttp (booking's Stripe calls) get client spans as children of
  it;
- every JSON log line written inside a span carries its ``trace_id`` and ``span_id``
  (``ticketing_common.logs``).

Off, nothing of the SDK is imported or set up: the global tracer provider stays the API's
default, whose tracers are no-ops, no library is patched and no interceptor is added.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("ticketing.tracing")

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"

_enabled = False


def endpoint() -> str:
    return os.environ.get(ENDPOINT_VARIABLE, "").strip()


def enabled() -> bool:
    return _enabled


def configure(component: str) -> bool:
    """Set up tracing for this process if an OTLP endpoint is configured; True when it is on.
    Called once, before the server is built; calling it again changes nothing."""
    global _enabled
    if _enabled or not endpoint():
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME, when set, wins over the component name (Resource.create reads it).
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: component}
    )
    provider = TracerProvider(resource=resource)
    # The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT (and _HEADERS, _TIMEOUT...) itself.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    URLLib3Instrumentor().instrument(tracer_provider=provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    _enabled = True
    log.info("tracing on: spans exported over OTLP/HTTP to %s", endpoint())
    return True


def server_interceptors() -> list[Any]:
    """The interceptors a gRPC aio server needs for tracing: none when tracing is off."""
    if not _enabled:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    # Health checks (Envoy's, Kubernetes probes, the mesh fan-out) and reflection every few
    # seconds would bury the calls worth looking at.
    quiet = filters.any_of(
        filters.service_prefix("grpc.health."), filters.service_prefix("grpc.reflection.")
    )
    return [aio_server_interceptor(filter_=filters.negate(quiet))]  # type: ignore[no-untyped-call]


def shutdown() -> None:
    """Flush the spans still queued (at process exit; the SDK also does it at exit)."""
    if not _enabled:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()
