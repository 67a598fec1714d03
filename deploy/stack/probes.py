"""Health probes: each answers None when the component is healthy, else why it is not."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ticketing_common.tls import TlsFiles

Probe = Callable[[], str | None]

TIMEOUT = 2.0


def tcp(host: str, port: int) -> Probe:
    def check() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT):
                return None
        except OSError as exc:
            return f"{host}:{port}: {exc.strerror or exc}"

    return check


def postgres(dsn: str) -> Probe:
    def check() -> str | None:
        import psycopg

        try:
            with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            return f"postgres: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}"
        return None

    return check


def redis(host: str, port: int) -> Probe:
    def check() -> str | None:
        try:
            with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
                sock.sendall(b"PING\r\n")
                answer = sock.recv(64)
        except OSError as exc:
            return f"{host}:{port}: {exc.strerror or exc}"
        return None if answer.startswith(b"+PONG") else f"PING answered {answer!r}"

    return check


def http_json(url: str, headers: dict[str, str] | None = None) -> Probe:
    """GET url; healthy when it answers 200 with a JSON body."""

    def check() -> str | None:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - http only
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return f"GET {url}: HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            return f"GET {url}: {exc}"
        return None

    return check


def http_ok(url: str) -> Probe:
    """GET url; healthy when it answers 200."""

    def check() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT):  # noqa: S310 - http only
                return None
        except urllib.error.HTTPError as exc:
            return f"GET {url}: HTTP {exc.code}"
        except OSError as exc:
            return f"GET {url}: {exc}"

    return check


def grpc_health(target: str, service: str = "", tls: TlsFiles | None = None) -> Probe:
    """grpc.health.v1.Health/Check; healthy when SERVING. With ``tls``, over mutual TLS with
    that client certificate (the stack's services accept nothing else)."""

    def check() -> str | None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        from ticketing_common.tls import channel_credentials

        try:
            if tls is None:
                opened = grpc.insecure_channel(target)
            else:
                try:
                    credentials = channel_credentials(tls)
                except OSError as exc:
                    return f"health check: cannot read the client certificate: {exc}"
                opened = grpc.secure_channel(target, credentials)
            with opened as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return f"health check: {exc.code().name} {exc.details() or ''}".strip()
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return (
                f"health check: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
            )
        return None

    return check
