"""Port layout of the local stack.

The gateway has its own port (default 8080); every other component sits at a base port
(default 7100) plus a fixed offset, so two stacks on one machine only need two numbers apart.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

HOST = "127.0.0.1"
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_PORT_BASE = 7100

OFFSETS: dict[str, int] = {
    "postgres": 0,
    "redis": 1,
    "search-engine": 2,
    "fake-stripe": 3,
    "envoy-admin": 4,
    # The gateway's second listener: the REST origin its HTTP cache fills from
    # (see envoy_config.py).
    "envoy-rest-origin": 5,
    # The browser client's page and development sign-in, behind the gateway (see web/).
    "web": 6,
    # The Prometheus server scraping every process and Envoy (when Debian's prometheus is here).
    "prometheus": 7,
    # `ticketing up --ha` (deploy/stack/ha.py): the Redis replica, the second Postgres node, the
    # three Sentinels, etcd (client and peer) and each Patroni node's REST API. In the gaps of
    # the single-node layout, so the span (and every single-node port) stays as it was.
    "redis-replica": 8,
    "postgres-2": 9,
    "redis-sentinel-1": 15,
    "redis-sentinel-2": 16,
    "redis-sentinel-3": 17,
    "etcd": 18,
    "etcd-peer": 19,
    "postgres-rest": 25,
    "postgres-2-rest": 26,
    "catalog": 10,
    "search": 11,
    "booking": 12,
    "queue": 13,
    "cdc-worker": 14,
    # Each process's /metrics, loopback only and never routed by the gateway.
    "catalog-metrics": 20,
    "search-metrics": 21,
    "booking-metrics": 22,
    "queue-metrics": 23,
    "cdc-worker-metrics": 24,
}
# `ticketing up --replicas N`: the 2nd and 3rd instance of each public service, on ports of
# their own (catalog-2 at base + 30, its metrics at base + 40, ...). The CDC worker runs
# active/standby: with N >= 2 a second one (cdc-worker-2) waits for the slot's advisory lock.
MAX_REPLICAS = 3
CDC_WORKER = "cdc-worker"
CDC_WORKERS_MAX = 2
OFFSETS["cdc-worker-2"] = 38
OFFSETS["cdc-worker-2-metrics"] = 39
REPLICATED = ("catalog", "search", "booking", "queue")
for _k in range(2, MAX_REPLICAS + 1):
    for _i, _name in enumerate(REPLICATED):
        OFFSETS[f"{_name}-{_k}"] = 30 + (_k - 2) * len(REPLICATED) + _i
        OFFSETS[f"{_name}-{_k}-metrics"] = 40 + (_k - 2) * len(REPLICATED) + _i
SPAN = max(OFFSETS.values()) + 1


def instances(name: str, replicas: int) -> list[str]:
    """The stack components that run one service: ``catalog``, ``catalog-2``, ...; the CDC
    worker's active one and (N >= 2) its standby, ``cdc-worker-2``."""
    if name == CDC_WORKER:
        return [name] + [f"{name}-{k}" for k in range(2, min(replicas, CDC_WORKERS_MAX) + 1)]
    if name not in REPLICATED:
        return [name]
    return [name] + [f"{name}-{k}" for k in range(2, replicas + 1)]


class PortInUseError(RuntimeError):
    """A port the stack needs is already taken by another process."""

    def __init__(self, component: str, port: int) -> None:
        self.component = component
        self.port = port
        self.reason = (
            f"port {HOST}:{port} ({component}) is already in use; stop what holds it "
            "or choose other ports with --port-base / --gateway-port"
        )
        super().__init__(f"{component}: {self.reason}")


@dataclass(frozen=True)
class Ports:
    """Every port of one stack."""

    gateway: int = DEFAULT_GATEWAY_PORT
    base: int = DEFAULT_PORT_BASE

    def __post_init__(self) -> None:
        if not 1 <= self.gateway <= 65535:
            raise ValueError(f"gateway port {self.gateway} is out of range")
        if not 1 <= self.base <= 65535 - SPAN:
            raise ValueError(f"port base {self.base} is out of range")
        if self.base <= self.gateway < self.base + SPAN:
            last = self.base + SPAN - 1
            raise ValueError(f"gateway port {self.gateway} collides with {self.base}..{last}")

    def of(self, name: str) -> int:
        """The port of a component: 'gateway' or a key of OFFSETS."""
        if name == "gateway":
            return self.gateway
        return self.base + OFFSETS[name]

    def all(self) -> dict[str, int]:
        """Every named port, gateway first."""
        return {"gateway": self.gateway} | {name: self.of(name) for name in OFFSETS}


def is_port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on host:port (a TIME_WAIT leftover does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ensure_port_free(component: str, port: int) -> None:
    """Raise PortInUseError naming the component when its port is taken."""
    if not is_port_free(port):
        raise PortInUseError(component, port)
