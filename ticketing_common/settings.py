"""Typed settings read once from the environment.

Each process declares a frozen dataclass whose fields name its variables: field ``database_url``
is read from ``TICKETING_DATABASE_URL``. A field without a default is required. Values are
converted to the field's type (str, int, float, bool, tuple[str, ...], dict[str, str]).
``load(cls)`` collects every problem before failing, so an operator fixes them all at once.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ticketing_common.tls import GATEWAY_IDENTITY, TlsFiles

PREFIX = "TICKETING_"

T = TypeVar("T")


class SettingsError(Exception):
    """The environment does not describe a runnable process; the message says what to fix."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaseSettings:
    """What every gRPC process needs."""

    listen: str = "127.0.0.1:0"
    log_level: str = "INFO"
    # full.Service.Name -> host:port of the other services of the mesh.
    peers: dict[str, str] = dataclasses.field(default_factory=dict)
    # Seconds a stopping server keeps serving in-flight calls.
    shutdown_grace_seconds: float = 5.0
    # Processes serving the same port (SO_REUSEPORT); more than one needs a fixed port.
    workers: int = 1
    # host:port of the Prometheus endpoint (/metrics); empty: none.
    metrics_listen: str = ""
    # Mutual TLS (ticketing_common.tls): this process's certificate and key (PEM files) and the
    # CA that signs every peer of the mesh. Required unless ``plaintext``.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    # The peer identity (a URI SAN of its certificate) whose identity headers are believed.
    tls_gateway_identity: str = GATEWAY_IDENTITY
    # No TLS at all: for a process a test or a benchmark starts in-process on the loopback.
    # Identity headers are then believed from anyone; never for a deployed process.
    plaintext: bool = False
    # host:port of a plaintext port answering grpc.health.v1 only, for probes that speak no
    # TLS (the kubelet's native gRPC probes); empty: none.
    health_listen: str = ""
    # Seconds a starting process waits for the stores it names (Postgres, Redis or its
    # Sentinels) before it stops naming the setting (ticketing_common.startup); 0: no check.
    startup_timeout_seconds: float = 30.0

    @property
    def tls(self) -> TlsFiles | None:
        """The process's certificate files; None when it runs in plaintext."""
        if self.plaintext:
            return None
        return TlsFiles(cert=Path(self.tls_cert), key=Path(self.tls_key), ca=Path(self.tls_ca))

    def validate(self) -> None:
        if not self.plaintext:
            missing = [
                env_name(name)
                for name in ("tls_cert", "tls_key", "tls_ca")
                if not str(getattr(self, name)).strip()
            ]
            if missing:
                raise SettingsError(
                    f"{', '.join(missing)} must name PEM files (mutual TLS); set"
                    f" {env_name('plaintext')}=true only for a loopback test process"
                )
        if self.workers < 1:
            raise SettingsError(f"{env_name('workers')} must be at least 1")
        if self.workers > 1 and self.listen.endswith(":0"):
            raise SettingsError(
                f"{env_name('workers')}={self.workers} needs a fixed port in {env_name('listen')}"
            )
        if self.metrics_listen:
            host, _, port = self.metrics_listen.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise SettingsError(
                    f"{env_name('metrics_listen')}={self.metrics_listen!r} is not host:port"
                )


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisSettings(BaseSettings):
    """What a process that talks to Redis needs: a URL, or the Sentinels that know the primary.

    With ``redis_sentinels`` set (``host:port,...``), the primary's address comes from the
    Sentinels (``redis_master_name`` is the name they monitor it by) and only the database
    number and credentials of ``redis_url`` are used (ticketing_common.redis_client)."""

    redis_url: str
    redis_sentinels: tuple[str, ...] = ()
    redis_master_name: str = "ticketing"

    def validate(self) -> None:
        super().validate()
        for address in self.redis_sentinels:
            try:
                _, port = split_host_port(address)
            except SettingsError:
                port = -1
            if not 0 < port <= 65535:
                raise SettingsError(
                    f"{env_name('redis_sentinels')}: {address!r} is not host:port"
                    " (expected host:port,host:port,...)"
                )
        if self.redis_sentinels and not self.redis_master_name.strip():
            raise SettingsError(
                f"{env_name('redis_master_name')} must name the primary the Sentinels monitor"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchEngineSettings(BaseSettings):
    """What a process that talks to the search engine needs (the search service and the CDC
    worker share one adapter, ``search_svc.adapters.engine``).

    An engine made by an operator (the OpenSearch operator, ECK) serves HTTPS with a
    certificate of its own CA and asks for basic auth: ``search_ca_file`` is that CA (PEM),
    ``search_username`` with ``search_password`` or ``search_password_file`` (a mounted
    Secret's key; read once at start) the account. Both official clients get all of them."""

    search_url: str
    # Which client speaks to it: auto (ask the engine's root endpoint), elasticsearch, opensearch.
    search_engine: str = "auto"
    search_username: str = ""
    search_password: str = ""
    search_password_file: str = ""
    search_ca_file: str = ""

    def validate(self) -> None:
        super().validate()
        if self.search_engine not in SEARCH_ENGINES:
            raise SettingsError(
                f"{env_name('search_engine')}={self.search_engine!r}: use auto, elasticsearch or"
                " opensearch"
            )
        if self.search_password and self.search_password_file:
            raise SettingsError(
                f"set one of {env_name('search_password')} and"
                f" {env_name('search_password_file')}, not both"
            )
        if self.search_password_file:
            try:
                Path(self.search_password_file).read_bytes()
            except OSError as exc:
                raise SettingsError(
                    f"{env_name('search_password_file')}={self.search_password_file!r} cannot be"
                    f" read: {exc.strerror or exc}"
                ) from exc
        has_password = bool(self.search_password or self.search_password_file)
        if has_password != bool(self.search_username):
            raise SettingsError(
                f"{env_name('search_username')} and a password ({env_name('search_password')} or"
                f" {env_name('search_password_file')}) go together: basic auth needs both"
            )
        if self.search_ca_file:
            if not self.search_url.lower().startswith("https://"):
                raise SettingsError(
                    f"{env_name('search_ca_file')} is set but {env_name('search_url')}="
                    f"{self.search_url!r} is not https://: the CA would never be used"
                )
            try:
                ssl.create_default_context(cafile=self.search_ca_file)
            except (OSError, ssl.SSLError) as exc:
                reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
                raise SettingsError(
                    f"{env_name('search_ca_file')}={self.search_ca_file!r} is not a readable PEM"
                    f" CA certificate: {reason}"
                ) from exc

    def search_password_value(self) -> str:
        """The password: the variable's, or the file's first line (a Secret's key)."""
        if self.search_password_file:
            text = Path(self.search_password_file).read_text(encoding="utf-8")
            return text.splitlines()[0] if text else ""
        return self.search_password


SEARCH_ENGINES = ("auto", "elasticsearch", "opensearch")


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _convert(raw: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is str:
        return raw
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    if annotation in (int, float):
        return annotation(raw)
    if origin is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if origin is dict:
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
            pairs[key.strip()] = value.strip()
        return pairs
    if isinstance(annotation, types.UnionType) or origin is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _convert(raw, inner[0])
    raise TypeError(f"unsupported settings type {annotation!r}")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from the environment or raise SettingsError naming every problem."""
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = env_name(field.name)
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        raw = env.get(name)
        if raw is None or (required and not raw.strip()):
            if required:
                problems.append(f"{name} is required but not set")
            continue
        try:
            values[field.name] = _convert(raw, hints[field.name])
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}={raw!r} is invalid: {exc}")
    if problems:
        raise SettingsError(f"{cls.__name__}: " + "; ".join(problems))
    settings = cls(**values)
    validate = getattr(settings, "validate", None)
    if validate is not None:
        validate()
    return settings


def split_host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)
