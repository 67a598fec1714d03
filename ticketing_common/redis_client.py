"""The Redis client every service opens the same way: short timeouts, so a Redis outage
turns into a quick fallback or UNAVAILABLE instead of stuck requests."""

from __future__ import annotations

import redis.asyncio as redis


def open_redis(url: str, *, timeout_seconds: float = 0.5) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=10,
        retry_on_timeout=False,
        max_connections=256,
    )
