"""Tracing costs nothing when no OTLP endpoint is set: no SDK, no patched library, no
interceptor, and the tracer every instrumentation would get is the API's no-op one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh interpreter: the global tracer provider can be set once per process.
PROBE = """
import json, logging, sys
from opentelemetry import trace
from ticketing_common import logs, tracing
from ticketing_common.server import build_server
from ticketing_common.settings import BaseSettings

on = tracing.configure("probe")
server = build_server(BaseSettings(listen="127.0.0.1:0", plaintext=True), [])
span = trace.get_tracer("probe").start_span("call")
record = logging.LogRecord("probe", logging.INFO, "", 0, "inside", None, None)
with trace.use_span(span):
    line = json.loads(logs.JsonFormatter("probe").format(record))
print(json.dumps({
    "on": on,
    "interceptors": len(tracing.server_interceptors()),
    "provider": type(trace.get_tracer_provider()).__name__,
    "recording": span.is_recording(),
    "span_valid": span.get_span_context().is_valid,
    "sdk_loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")),
    "instrumented": sorted(m for m in sys.modules if m.startswith("opentelemetry.instrumentation")),
    "log_keys": sorted(line),
}))
"""


def probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=clean | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_without_an_endpoint_the_tracer_is_the_no_op_one_and_nothing_is_set_up():
    result = probe()
    assert result["on"] is False
    assert result["interceptors"] == 0
    assert result["provider"] == "ProxyTracerProvider"  # the API's default: no-op tracers
    assert result["recording"] is False and result["span_valid"] is False
    assert result["sdk_loaded"] == [] and result["instrumented"] == []
    assert "trace_id" not in result["log_keys"]


def test_an_empty_endpoint_is_off_too():
    result = probe(OTEL_EXPORTER_OTLP_ENDPOINT="  ")
    assert result["on"] is False and result["provider"] == "ProxyTracerProvider"


def test_with_an_endpoint_spans_are_recorded_and_log_lines_carry_the_trace_id():
    # Nothing listens there; the exporter only tries (in its thread) after the probe is done.
    result = probe(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_SCHEDULE_DELAY="60000"
    )
    assert result["on"] is True
    assert result["interceptors"] == 1
    assert result["provider"] == "TracerProvider"
    assert result["recording"] is True
    assert {"trace_id", "span_id"} <= set(result["log_keys"])  # type: ignore[arg-type]
