"""The Redis client every service opens the same way: short timeouts, so a Redis outage
turns into a quick fallback or UNAVAILABLE instead of stuck requests.

Two forms, one client shape: a plain URL (``TICKETING_REDIS_URL``), or Sentinel
(``TICKETING_REDIS_SENTINELS`` and ``TICKETING_REDIS_MASTER_NAME``), where redis-py asks the
Sentinels for the current primary on every new connection. After a failover the connections to
the dead primary fail (the callers hear ``ConnectionError``, the services UNAVAILABLE), and the
next ones go to the promoted replica: the client follows by itself, nothing restarts
(tests/integration/test_redis_sentinel.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from ticketing_common.settings import split_host_port


class _SentinelRedis(redis.Redis):
    """The primary's client; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            await manager.aclose()


def open_redis(
    url: str,
    *,
    timeout_seconds: float = 0.5,
    sentinels: Sequence[str] = (),
    master_name: str = "ticketing",
) -> redis.Redis:
    """A client of ``url``; with ``sentinels`` (``host:port`` each), of the primary they know as
    ``master_name``, and then only the database number and credentials of ``url`` are used."""
    options: dict[str, Any] = {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "health_check_interval": 10,
        "retry_on_timeout": False,
        "max_connections": 256,
    }
    if not sentinels:
        return redis.Redis.from_url(url, **options)
    from_url = parse_url(url)
    for key in ("db", "username", "password"):
        if from_url.get(key) is not None:
            options[key] = from_url[key]
    manager = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        [split_host_port(address) for address in sentinels],
        # No retries per Sentinel (redis-py's default client makes 10, seconds against a dead
        # one): the next Sentinel of the list is the retry.
        sentinel_kwargs={
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
            "retry": Retry(NoBackoff(), 0),
        },
    )
    client: redis.Redis = manager.master_for(master_name, redis_class=_SentinelRedis, **options)
    return client
