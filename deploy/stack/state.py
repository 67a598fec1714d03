"""The state directory of a local stack and what is stored in it.

Layout of ``<state>/``:

- ``config.json``: ports and CORS origins chosen at the first ``up`` (later commands reuse them)
- ``keys/``: the development JWT key pair (``jwt-private.pem``, ``jwks.json``) and the fake
  Stripe secrets (``stripe.json``); all generated here, never committed
- ``gateway.json``: the gateway's token issuer and rate limits
  (``ticketing up --jwks-url/--jwt-issuer/--jwt-audience``; absent = defaults)
- ``postgres/``: the database cluster; ``redis/``: Redis' working dir (its append-only file)
- with ``--ha``: ``patroni/<node>/`` (each Patroni node's config and data), ``etcd/``, and a
  folder per Redis node and Sentinel under ``redis/``
- ``envoy/envoy.yaml``: the rendered gateway config
- ``logs/<component>.log``: each component's output, ``logs/supervisor.log``
- ``run/stack.json``: what the supervisor is running now; ``run/supervisor.lock``
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import deploy

from .ports import DEFAULT_GATEWAY_PORT, DEFAULT_PORT_BASE, HOST, Ports

REPO_ROOT = Path(deploy.__file__).resolve().parent.parent
STATE_DIR_ENV = "TICKETING_STATE_DIR"


def default_state_dir() -> Path:
    """TICKETING_STATE_DIR if set, else ``.ticketing/`` in the repository checkout."""
    env = os.environ.get(STATE_DIR_ENV)
    return Path(env) if env else REPO_ROOT / ".ticketing"


@dataclass(frozen=True)
class StateDir:
    """Paths inside one stack's state directory."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def postgres_data(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def envoy_dir(self) -> Path:
        return self.root / "envoy"

    @property
    def stack_file(self) -> Path:
        return self.run / "stack.json"

    @property
    def lock_file(self) -> Path:
        return self.run / "supervisor.lock"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def log_of(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def create(self) -> None:
        """Create the directory tree (idempotent)."""
        for folder in (self.root, self.logs, self.run, self.redis_dir, self.envoy_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.keys.mkdir(parents=True, exist_ok=True)
        self.keys.chmod(0o700)


@dataclass
class StackConfig:
    """Settings chosen at the first ``up`` and reused by every later command."""

    gateway_port: int = DEFAULT_GATEWAY_PORT
    port_base: int = DEFAULT_PORT_BASE
    cors_origins: list[str] = field(default_factory=list)
    # Which client speaks to the search engine: auto (ask it), elasticsearch or opensearch.
    search_engine: str = "auto"
    # Instances of each public service (ticketing up --replicas), each its own process and port.
    replicas: int = 1
    # The high-availability data tier (ticketing up --ha, deploy/stack/ha.py): Postgres as a
    # Patroni cluster of two nodes on etcd, Redis as a primary, a replica and three Sentinels.
    ha: bool = False

    @property
    def ports(self) -> Ports:
        return Ports(gateway=self.gateway_port, base=self.port_base)

    @property
    def origins(self) -> list[str]:
        return self.cors_origins or [f"http://{HOST}:{self.gateway_port}"]

    @property
    def database_url(self) -> str:
        """The admin's URL: migrations, the seed, the CLI and tests; never a service."""
        return self.database_url_as("postgres")

    def database_url_as(self, role: str) -> str:
        """The URL of the stack's database for one role. No password: the local cluster trusts
        loopback (CONTRIBUTING.md, "Who owns which table", says why)."""
        if self.ha:
            # Every Patroni node; libpq picks the one that takes writes (the primary).
            nodes = f"{HOST}:{self.ports.of('postgres')},{HOST}:{self.ports.of('postgres-2')}"
            return f"postgresql://{role}@{nodes}/ticketing?target_session_attrs=read-write"
        return f"postgresql://{role}@{HOST}:{self.ports.of('postgres')}/ticketing"

    @property
    def redis_sentinels(self) -> list[str]:
        """The Sentinels' addresses under --ha ([] otherwise)."""
        if not self.ha:
            return []
        names = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
        return [f"{HOST}:{self.ports.of(name)}" for name in names]

    @property
    def redis_url(self) -> str:
        return f"redis://{HOST}:{self.ports.of('redis')}/0"

    @property
    def search_url(self) -> str:
        return f"http://{HOST}:{self.ports.of('search-engine')}"

    @property
    def stripe_api_base(self) -> str:
        return f"http://{HOST}:{self.ports.of('fake-stripe')}"

    @property
    def gateway(self) -> str:
        return f"{HOST}:{self.gateway_port}"


def load_config(state: StateDir) -> StackConfig:
    """The stored config, or the defaults when none was stored yet."""
    if not state.config_file.exists():
        return StackConfig()
    raw = json.loads(state.config_file.read_text())
    return StackConfig(
        gateway_port=int(raw.get("gateway_port", DEFAULT_GATEWAY_PORT)),
        port_base=int(raw.get("port_base", DEFAULT_PORT_BASE)),
        cors_origins=list(raw.get("cors_origins", [])),
        search_engine=str(raw.get("search_engine", "auto")),
        replicas=int(raw.get("replicas", 1)),
        ha=bool(raw.get("ha", False)),
    )


def save_config(state: StateDir, config: StackConfig) -> None:
    state.root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        state.config_file,
        {
            "gateway_port": config.gateway_port,
            "port_base": config.port_base,
            "cors_origins": config.cors_origins,
            "search_engine": config.search_engine,
            "replicas": config.replicas,
            "ha": config.ha,
        },
    )


@dataclass(frozen=True)
class StripeSecrets:
    api_key: str
    webhook_secret: str


def stripe_secrets(state: StateDir) -> StripeSecrets:
    """The fake Stripe key and webhook secret of this stack, generated on first use."""
    path = state.keys / "stripe.json"
    if path.exists():
        raw = json.loads(path.read_text())
        return StripeSecrets(raw["api_key"], raw["webhook_secret"])
    found = StripeSecrets(
        api_key=f"sk_test_{secrets.token_hex(16)}",
        webhook_secret=f"whsec_{secrets.token_hex(16)}",
    )
    state.keys.mkdir(parents=True, exist_ok=True)
    write_private(
        path, json.dumps({"api_key": found.api_key, "webhook_secret": found.webhook_secret})
    )
    return found


def admission_key(state: StateDir) -> str:
    """The key the queue signs admissions with and booking verifies them with (HMAC),
    generated on first use."""
    path = state.keys / "admission.key"
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_hex(32)
    state.keys.mkdir(parents=True, exist_ok=True)
    write_private(path, key)
    return key


def write_private(path: Path, text: str | bytes) -> None:
    """Write a file readable by its owner only (created 0600, never wider)."""
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Replace a JSON file in one rename so readers never see half of it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_stack(state: StateDir) -> dict[str, Any] | None:
    """The supervisor's last published view of the stack, if any."""
    try:
        snapshot = json.loads(state.stack_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return snapshot if isinstance(snapshot, dict) else None
