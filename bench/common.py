"""Helpers every benchmark shares: free ports for a stack of its own, timestamps, channels
straight to a service's port (mutual TLS)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from deploy.stack import certs
from deploy.stack.ports import SPAN, Ports, is_port_free
from deploy.stack.state import StateDir
from ticketing_common.tls import TlsFiles, channel_credentials


def free_layout(start: int = 24000) -> Ports:
    """A port base (and the gateway port after it) whose whole range, plus three spare ports
    for the benchmark's own servers, is free."""
    for base in range(start, 31000, SPAN + 3):
        if all(is_port_free(p) for p in range(base, base + SPAN + 3)):
            return Ports(gateway=base + SPAN, base=base)
    raise SystemExit("no free ports")


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def as_gateway(state: Path) -> TlsFiles:
    """The gateway's certificate of a stack (deploy/stack/certs.py). A benchmark that calls a
    service's port directly, to measure it without Envoy, stands where the gateway stands:
    mutual TLS with the certificate whose identity headers the service believes."""
    return certs.files_of(StateDir(state), certs.GATEWAY)


def aio_channel(
    target: str, tls: TlsFiles | None, options: list[tuple[str, Any]] | None = None
) -> grpc.aio.Channel:
    """A channel to the gateway (``tls`` None: h2c) or to a service's port (mutual TLS)."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, channel_credentials(tls), options=options)
