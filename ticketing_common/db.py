"""The Postgres connection pool every service shares the shape of (psycopg 3, async)."""

from __future__ import annotations

import logging

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("ticketing.db")


async def _configure(conn: AsyncConnection) -> None:
    # A statement stuck behind a lock fails instead of piling up requests during a surge.
    await conn.execute("SET lock_timeout = '2s'")
    await conn.execute("SET statement_timeout = '10s'")
    await conn.execute("SET idle_in_transaction_session_timeout = '30s'")
    await conn.commit()


async def open_pool(
    database_url: str, *, min_size: int = 2, max_size: int = 20, name: str = "ticketing"
) -> AsyncConnectionPool:
    """Open a pool without waiting for the database: a service starts even while Postgres
    is still coming up, and calls fail with UNAVAILABLE until it answers."""
    pool = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        configure=_configure,
        timeout=5.0,
        reconnect_timeout=0,  # never give up reconnecting
        kwargs={"autocommit": False, "application_name": name},
    )
    await pool.open(wait=False)
    return pool
