"""Schema migrations: the ordered SQL files in deploy/migrations, applied with yoyo.

Each ``NNNN_name.sql`` runs in one transaction (Postgres has transactional DDL) and has a
``NNNN_name.rollback.sql`` for ``yoyo rollback`` during development. yoyo records what it
applied in its own tables (``_yoyo_migration`` and friends) in the same database.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from yoyo import get_backend, read_migrations

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_log = logging.getLogger(__name__)

# The schemes a libpq URL may use, and yoyo's name for its psycopg 3 backend. yoyo's plain
# "postgresql" scheme means psycopg2.
_LIBPQ_SCHEMES = ("postgresql", "postgres")
_YOYO_PSYCOPG3 = "postgresql+psycopg"


def yoyo_url(database_url: str) -> str:
    """Turn a libpq URL (``postgresql://user@host:port/db``) into yoyo's psycopg 3 form."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {database_url!r}")
    if scheme in _LIBPQ_SCHEMES:
        return f"{_YOYO_PSYCOPG3}://{rest}"
    if scheme == _YOYO_PSYCOPG3:
        return database_url
    raise ValueError(f"unsupported scheme {scheme!r}, expected postgresql://")


def apply_migrations(database_url: str, *, lock_timeout: float = 60.0) -> list[str]:
    """Apply the pending migrations; return the ids applied, in order ([] if none).

    Runs under yoyo's lock (a row in ``yoyo_lock``), so processes starting together apply
    each migration once: the second waits up to ``lock_timeout`` seconds, then finds nothing
    left to do. A process killed while holding the lock leaves the row behind; remove it
    with ``yoyo break-lock``.
    """
    migrations = read_migrations(str(MIGRATIONS_DIR))
    with get_backend(yoyo_url(database_url)) as backend, backend.lock(timeout=lock_timeout):
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    applied = [migration.id for migration in pending]
    if applied:
        _log.info("applied migrations", extra={"migrations": applied})
    return applied


def main() -> int:
    """``python -m deploy.migrate``: apply what is pending to ``TICKETING_DATABASE_URL`` (the
    Helm chart runs it as a pre-install/pre-upgrade Job); exit 2 when the URL is missing."""
    from ticketing_common import logs

    logs.configure("migrate", os.environ.get("TICKETING_LOG_LEVEL", "INFO"))
    url = os.environ.get("TICKETING_DATABASE_URL", "").strip()
    if not url:
        print("migrate: TICKETING_DATABASE_URL is required but not set", file=sys.stderr)
        return 2
    applied = apply_migrations(url)
    _log.info("migrations up to date", extra={"applied": len(applied)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
