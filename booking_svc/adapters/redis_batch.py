"""Redis commands of concurrent requests sent together (issue 14): during a surge every hold
takes its seat locks, extends them and marks its event's pages changed, three round trips to
Redis each. The commands that requests have ready at one moment go out as one pipeline (no
MULTI: each command is its own, as it was) with at most ``max_inflight`` pipelines in flight;
a lone command goes at once. Every caller gets its own command's answer or error, in the form
the client would have given it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis


class RedisBatch:
    def __init__(self, client: redis.Redis, *, max_batch: int = 256, max_inflight: int = 2) -> None:
        self._client = client
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._waiting: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._inflight = 0
        self._drains: set[asyncio.Task[None]] = set()

    async def call(self, *command: Any) -> Any:
        """The answer to one command (``"EVAL", script, numkeys, *keys, *args`` or any other);
        raises the client's RedisError subclasses as the client would."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((command, future))
        if self._inflight < self._max_inflight:
            self._inflight += 1
            task = asyncio.create_task(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # the commands of this turn of the event loop join in
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._send(batch)
        finally:
            self._inflight -= 1

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                results: list[Any] = [await self._client.execute_command(*batch[0][0])]  # type: ignore[no-untyped-call]
            else:
                pipe = self._client.pipeline(transaction=False)
                for command, _ in batch:
                    pipe.execute_command(*command)
                results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: every command of it did
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
