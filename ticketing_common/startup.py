"""What a process checks before it serves: that the data stores its settings name answer.

A service that starts against a database URL with no reachable primary, or Sentinels none of
which answers, would otherwise come up, report itself alive and fail every call; the mistake
would surface as UNAVAILABLE far from its cause. Instead each process tries its stores for up
to ``TICKETING_STARTUP_TIMEOUT_SECONDS`` (the stack starts them first, and in Kubernetes a
store may still be coming up) and then stops with exit status 2 and a message that names the
setting. Once a process serves, a store that goes away later makes calls answer UNAVAILABLE,
and the process stays up to follow it back (a failover, a restart): only the start is checked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ticketing_common.settings import BaseSettings, RedisSettings, SettingsError, env_name

# Seconds between two tries while a store does not answer yet.
RETRY_SECONDS = 0.5


async def check_stores(settings: BaseSettings) -> None:
    """Wait for every store ``settings`` names to answer; SettingsError naming the first one
    that did not within ``settings.startup_timeout_seconds`` (0: do not check)."""
    timeout = settings.startup_timeout_seconds
    if timeout <= 0:
        return
    database_url = getattr(settings, "database_url", None)
    if isinstance(database_url, str) and database_url:
        await _wait(
            lambda: _postgres(database_url),
            timeout,
            f"{env_name('database_url')}: no reachable primary (a read-write server)",
        )
    if isinstance(settings, RedisSettings):
        name = "redis_sentinels" if settings.redis_sentinels else "redis_url"
        what = (
            f"no Sentinel answered with the primary of {settings.redis_master_name!r}"
            if settings.redis_sentinels
            else "Redis does not answer"
        )
        await _wait(lambda: _redis(settings), timeout, f"{env_name(name)}: {what}")


async def _wait(attempt: Callable[[], Awaitable[None]], timeout: float, problem: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await attempt()
            return
        except Exception as exc:  # the last reason goes into the message
            if time.monotonic() + RETRY_SECONDS >= deadline:
                raise SettingsError(f"{problem} after {timeout:g} s ({_reason(exc)})") from None
        await asyncio.sleep(RETRY_SECONDS)


def _reason(exc: Exception) -> str:
    """The cause in one short line (redis-py's errors carry whole connection reprs)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else f"{type(exc).__name__}: {text[:160]}..."


async def _postgres(url: str) -> None:
    """One connection to a server that takes writes: with a multi-host URL, libpq tries each
    host; ``target_session_attrs=read-write`` in the URL keeps it to the primary."""
    import psycopg  # here, not at the top: a process with no database never loads the driver

    connection = await psycopg.AsyncConnection.connect(
        url, connect_timeout=3, target_session_attrs="read-write", autocommit=True
    )
    await connection.close()


async def _redis(settings: RedisSettings) -> None:
    # Here, not at the top: redis-py imports the OpenTelemetry metrics SDK when it is installed,
    # and a process without Redis (or without tracing) should load neither.
    from ticketing_common.redis_client import open_redis

    client = open_redis(
        settings.redis_url,
        timeout_seconds=2.0,
        sentinels=settings.redis_sentinels,
        master_name=settings.redis_master_name,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
