"""Helpers every benchmark shares: free ports for a stack of its own, timestamps."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from deploy.stack.ports import SPAN, Ports, is_port_free


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
