"""The queue in Redis: compact structures, and Lua wherever a change must be atomic.

Layout, per event (the ``{event_id}`` hash tag keeps one event's keys in one cluster slot):

``queue:{E}:q``          hash   the line's state: ``n`` slots handed out, ``head`` (first slot
                                the admitter has not passed), ``sealed`` (the sale opened: no
                                more shuffling), ``waiting`` (buyers in line, pre-queue
                                included), ``admitted`` (total), the operator's ``paused``,
                                ``rate`` and ``cap``, and the pacing bucket ``tokens`` as of
                                ``tokens_ms``
``queue:{E}:u:<b>``      hash   buyer -> record, ``b = crc32(user) % user_buckets``; records:
                                ``<slot>:<join_s>`` in line, ``a<expire_ms>:<join_s>``
                                admitted, ``l<join_s>`` left. Buckets of a few hundred fields
                                stay in Redis' compact ziplist encoding.
``queue:{E}:s:<k>``      hash   slot -> ``<b>:<user>`` for slots ``256k .. 256k+255``; deleted
                                once the admitter has passed the block
``queue:{E}:gone``       bitmap bit ``slot`` set when its buyer left or dropped out
``queue:{E}:alive:<e>``  bitmap bit ``slot`` set when its buyer was seen during epoch ``e``
                                (grace/2 long); expires after ``ALIVE_EPOCHS + 1`` epochs
``queue:{E}:active``     zset   admitted buyer -> admission expiry (ms): the active admissions
``queue:{E}:log``        zset   ``<ms>:<count>`` per admission batch over the last minute
``queue:events``         set    events with a queue, for the admitter
``queue:admitter``       string the admitter's lease: the owning process, with a TTL

The scripts are plain Lua files in ``lua/`` (package data), read once at import: each queue
operation's file (``join.lua``, ``admit.lua``, ...) runs behind ``prelude.lua``, which declares
the shared keys, arguments and helpers; the only substitution is the prelude's ``__BLOCK__``,
``__ALIVE_EPOCHS__`` and ``__DRAW_SPAN__``, the constants Lua shares with the domain.
``lease.lua`` and ``release.lua`` stand alone.

About 100 bytes per waiting buyer with 36-character user ids (bench/queue_redis_memory.py).
Every script reads the clock with Redis TIME, so all processes share one clock. Scripts touch
keys they derive from the prefix (slot blocks, user buckets, epochs): fine on one Redis, and on a
cluster the hash tag keeps them on the node of the declared keys.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from queue_svc.domain import (
    ALIVE_EPOCHS,
    DRAW_SPAN,
    Bucket,
    Controls,
    Snapshot,
    Standing,
)
from queue_svc.ports import (
    LEASE_KEY,
    Admitted,
    Counts,
    LeaseLost,
    LineView,
    PaceView,
    SweepView,
    Vitals,
)
from ticketing_common.errors import Unavailable

BLOCK = 256
EVENTS_KEY = "queue:events"
# The admitter looks at no more slots than this per call (a long run of gone slots is
# crossed over several ticks instead of blocking Redis).
MAX_SCAN = 5000
# Slots per DROP call.
DROP_CHUNK = 2000
# Buyers per batch call (TOUCH, STANDINGS).
BATCH = 1000

# The scripts, one file each in ``lua/`` (shipped as package data). The prelude declares the
# keys, arguments and helpers every queue script shares; its ``__NAME__`` placeholders are the
# only thing filled in from Python, with the constants Lua shares with the domain.
_LUA_CONSTANTS = {
    "__BLOCK__": BLOCK,
    "__ALIVE_EPOCHS__": ALIVE_EPOCHS,
    "__DRAW_SPAN__": DRAW_SPAN,
}


def _lua(name: str) -> str:
    return (resources.files("queue_svc.adapters") / "lua" / f"{name}.lua").read_text("utf-8")


def _prelude() -> str:
    text = _lua("prelude")
    for placeholder, value in _LUA_CONSTANTS.items():
        if placeholder not in text:
            raise RuntimeError(f"lua/prelude.lua lacks the placeholder {placeholder}")
        text = text.replace(placeholder, str(value))
    return text


_PRELUDE = _prelude()


def _script(name: str) -> str:
    """The queue script ``lua/<name>.lua`` behind the prelude, as Redis receives it."""
    return _PRELUDE + "\n" + _lua(name)


# Loaded once, at import: a missing file fails here, not at the first call.
_SCRIPTS = {
    name: _script(name)
    for name in (
        "join",
        "position",
        "leave",
        "standings",
        "touch",
        "snapshot",
        "pace",
        "admit",
        "sweep_read",
        "drop",
        "stats",
        "control",
    )
}
# The admitter's lease: standalone scripts on one key, without the prelude.
_LEASE = _lua("lease")
_RELEASE = _lua("release")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> list[str]:
    """The fields of a packed reply (see ``packed`` in the scripts)."""
    return _text(raw).split("|")


def _vitals(raw: Sequence[str]) -> Vitals:
    paused, rate, cap = raw[3:6]
    return Vitals(
        now_ms=int(raw[0]),
        waiting=int(raw[1]),
        active=int(raw[2]),
        controls=Controls(
            paused=paused == "1",
            rate_per_minute=int(rate) if rate else None,
            max_active=int(cap) if cap else None,
        ),
    )


_STANDINGS_BY_NAME = {s.value: s for s in Standing}


def _snapshot(vitals: Vitals, st: Sequence[str]) -> Snapshot:
    standing = _STANDINGS_BY_NAME[st[0]]
    x, pos, join_s = int(st[1]), int(st[2]), int(st[3])
    admitted = standing in (Standing.ADMITTED, Standing.ADMISSION_EXPIRED)
    return Snapshot(
        standing=standing,
        now_ms=vitals.now_ms,
        waiting=vitals.waiting,
        slot=-1 if admitted else x,
        position=pos,
        admission_expire_ms=x if admitted else 0,
        join_ms=join_s * 1000,
        active=vitals.active,
        controls=vitals.controls,
    )


class Coalescer:
    """Sends the script calls made during one event-loop turn as one pipeline.

    Under load many buyers' calls arrive together; one write and one read loop for all of them
    costs the process far less than a round trip each. A script Redis does not know yet
    (NOSCRIPT, after a Redis restart) is retried alone, which loads it.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._pending: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(
        self, batch: list[tuple[AsyncScript, list[str], list[Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            if len(batch) == 1:
                script, keys, args, future = batch[0]
                results: list[Any] = [await script(keys=keys, args=args)]
            else:
                pipe = self._client.pipeline(transaction=False)
                for script, keys, args, _ in batch:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            for (script, keys, args, future), result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):
                    result = await script(keys=keys, args=args)
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except Exception as exc:  # the connection, most likely: every caller hears of it
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            # Cancelled (the process is stopping) or anything else that escaped: no caller may
            # be left waiting on an answer that will never come.
            for *_, future in batch:
                if not future.done():
                    future.set_exception(RedisConnectionError("the call was abandoned"))

    async def aclose(self) -> None:
        """Wait for the batches in flight (their callers get their answers), then stop."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class QueueStore:
    """Every queue operation, each one Redis round trip (the buyers' calls coalesced)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        grace_seconds: float,
        user_buckets: int = 4096,
        max_calls: int = 200,
    ) -> None:
        self._redis = client
        self._epoch_ms = max(1, int(grace_seconds * 1000 / 2))
        self._buckets = user_buckets
        # Below the client's pool size (ticketing_common.redis_client), which refuses instead
        # of waiting once every connection is busy.
        self._slots = asyncio.Semaphore(max_calls)
        self._coalescer = Coalescer(client)
        register = client.register_script
        self._join = register(_SCRIPTS["join"])
        self._position = register(_SCRIPTS["position"])
        self._leave = register(_SCRIPTS["leave"])
        self._standings = register(_SCRIPTS["standings"])
        self._touch = register(_SCRIPTS["touch"])
        self._snapshot = register(_SCRIPTS["snapshot"])
        self._pace = register(_SCRIPTS["pace"])
        self._admit = register(_SCRIPTS["admit"])
        self._sweep_read = register(_SCRIPTS["sweep_read"])
        self._drop = register(_SCRIPTS["drop"])
        self._stats = register(_SCRIPTS["stats"])
        self._control = register(_SCRIPTS["control"])
        self._lease = register(_LEASE)
        self._release = register(_RELEASE)

    @property
    def epoch_ms(self) -> int:
        return self._epoch_ms

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[None]:
        """One Redis call: waits for a free connection rather than failing when a burst (a
        sale opening) has them all busy; Redis trouble becomes UNAVAILABLE."""
        async with self._slots:
            try:
                yield
            except RedisError as exc:
                raise Unavailable("the waiting queue's store is not reachable right now") from exc

    # --- keys ----------------------------------------------------------------------------

    @staticmethod
    def prefix(event_id: str) -> str:
        return f"queue:{{{event_id}}}:"

    def bucket_of(self, user_id: str) -> int:
        return zlib.crc32(user_id.encode()) % self._buckets

    def _keys(self, event_id: str, *extra: str) -> list[str]:
        p = self.prefix(event_id)
        return [p + "q", p + "gone", p + "active", *extra]

    def _args(self, event_id: str, open_ms: int, *extra: Any) -> list[Any]:
        return [self.prefix(event_id), self._epoch_ms, open_ms, *extra]

    def _user_key(self, event_id: str, user_id: str) -> str:
        return f"{self.prefix(event_id)}u:{self.bucket_of(user_id)}"

    # --- buyers --------------------------------------------------------------------------

    def _join_call(
        self, event_id: str, user_id: str, open_ms: int, expire_at_ms: int, draw: int
    ) -> tuple[list[str], list[Any]]:
        keys = self._keys(event_id, self._user_key(event_id, user_id), EVENTS_KEY)
        args = self._args(
            event_id, open_ms, user_id, self.bucket_of(user_id), draw, expire_at_ms, event_id
        )
        return keys, args

    async def join(
        self, event_id: str, user_id: str, *, open_ms: int, expire_at_ms: int, draw: int
    ) -> Snapshot:
        keys, args = self._join_call(event_id, user_id, open_ms, expire_at_ms, draw)
        async with self._call():
            raw = _fields(await self._coalescer.call(self._join, keys, args))
        return _snapshot(_vitals(raw), raw[6:])

    async def join_many(
        self,
        event_id: str,
        user_ids: Sequence[str],
        *,
        open_ms: int,
        expire_at_ms: int,
        draws: Sequence[int],
    ) -> None:
        """``join`` for many buyers in one pipelined round trip (load generators, benchmarks)."""
        async with self._call(), self._redis.pipeline(transaction=False) as pipe:
            for user_id, draw in zip(user_ids, draws, strict=True):
                keys, args = self._join_call(event_id, user_id, open_ms, expire_at_ms, draw)
                await self._join(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def position(self, event_id: str, user_id: str, *, open_ms: int) -> Snapshot:
        """The buyer's standing; polling keeps the place."""
        async with self._call():
            raw = _fields(
                await self._coalescer.call(
                    self._position,
                    self._keys(event_id, self._user_key(event_id, user_id)),
                    self._args(event_id, open_ms, user_id),
                )
            )
        return _snapshot(_vitals(raw), raw[6:])

    async def leave(self, event_id: str, user_id: str, *, open_ms: int) -> Snapshot:
        async with self._call():
            raw = _fields(
                await self._leave(
                    keys=self._keys(event_id, self._user_key(event_id, user_id)),
                    args=self._args(event_id, open_ms, user_id),
                )
            )
        return _snapshot(_vitals(raw), raw[6:])

    # --- watchers ------------------------------------------------------------------------

    async def standings(
        self, event_id: str, user_ids: Sequence[str], *, open_ms: int
    ) -> dict[str, Snapshot]:
        found: dict[str, Snapshot] = {}
        for start in range(0, len(user_ids), BATCH):
            chunk = user_ids[start : start + BATCH]
            pairs = [v for u in chunk for v in (self.bucket_of(u), u)]
            async with self._call():
                raw = _fields(
                    await self._standings(
                        keys=self._keys(event_id), args=self._args(event_id, open_ms, *pairs)
                    )
                )
            vitals = _vitals(raw)
            for i, user in enumerate(chunk):
                found[user] = _snapshot(vitals, raw[8 + 4 * i : 12 + 4 * i])
        return found

    async def touch(self, event_id: str, user_ids: Sequence[str]) -> int:
        touched = 0
        for start in range(0, len(user_ids), BATCH):
            pairs = [v for u in user_ids[start : start + BATCH] for v in (self.bucket_of(u), u)]
            async with self._call():
                touched += await self._touch(
                    keys=self._keys(event_id), args=self._args(event_id, -1, *pairs)
                )
        return touched

    async def line(self, event_id: str, *, open_ms: int, upto_slot: int) -> LineView:
        async with self._call():
            raw = await self._snapshot(
                keys=self._keys(event_id), args=self._args(event_id, open_ms, upto_slot)
            )
        fields = _fields(raw[0])
        return LineView(
            vitals=_vitals(fields),
            sealed=fields[6] == "1",
            head=int(fields[7]),
            n=int(fields[8]),
            gone=bytes(raw[1]),
        )

    # --- the admitter --------------------------------------------------------------------

    async def hold_lease(self, owner: str, ttl_ms: int, *, key: str = LEASE_KEY) -> bool:
        """Take or renew the admitter's lease; False while another process holds it."""
        async with self._call():
            return bool(await self._lease(keys=[key], args=[owner, ttl_ms]))

    async def release_lease(self, owner: str, *, key: str = LEASE_KEY) -> bool:
        """Give the lease up (another process takes it at its next tick); False if it had
        already passed to someone else."""
        async with self._call():
            return bool(await self._release(keys=[key], args=[owner]))

    async def aclose(self) -> None:
        """Let the calls in flight finish; the caller closes the Redis client after."""
        await self._coalescer.aclose()

    async def events(self) -> list[str]:
        async with self._call():
            return sorted(_text(e) for e in await self._redis.smembers(EVENTS_KEY))

    async def forget(self, event_id: str) -> None:
        async with self._call():
            await self._redis.srem(EVENTS_KEY, event_id)

    async def pace(self, event_id: str, *, open_ms: int) -> PaceView:
        async with self._call():
            raw = _fields(
                await self._pace(keys=self._keys(event_id), args=self._args(event_id, open_ms))
            )
        tokens, tokens_ms = raw[6], raw[7]
        bucket = Bucket(float(tokens), int(tokens_ms)) if tokens and tokens_ms else None
        return PaceView(vitals=_vitals(raw), bucket=bucket, sealed=raw[8] == "1")

    async def admit(
        self,
        event_id: str,
        *,
        owner: str,
        open_ms: int,
        limit: int,
        bucket: Bucket,
        ttl_ms: int,
        expire_at_ms: int,
        lease_key: str = LEASE_KEY,
    ) -> Admitted:
        """Admit up to ``limit`` live buyers from the head of the line and store the bucket
        (its tokens before this spending), if ``owner`` still holds the lease."""
        async with self._call():
            raw = await self._admit(
                keys=self._keys(event_id, lease_key, self.prefix(event_id) + "log"),
                args=self._args(
                    event_id,
                    open_ms,
                    owner,
                    limit,
                    f"{bucket.tokens:.6f}",
                    bucket.updated_ms,
                    ttl_ms,
                    MAX_SCAN,
                    expire_at_ms,
                ),
            )
        if int(raw[0]) < 0:
            raise LeaseLost(owner)
        return Admitted(admitted=int(raw[0]), dropped=int(raw[1]), head=int(raw[2]))

    async def sweep_view(self, event_id: str) -> SweepView:
        async with self._call():
            raw = await self._sweep_read(keys=self._keys(event_id), args=self._args(event_id, -1))
        bitmaps = tuple(bytes(b) for b in raw[3:])
        return SweepView(
            now_ms=int(raw[0]),
            head=int(raw[1]),
            n=int(raw[2]),
            gone=bitmaps[0] if bitmaps else b"",
            alive=bitmaps[1:],
        )

    async def drop(self, event_id: str, slots: Sequence[int]) -> int:
        dropped = 0
        for start in range(0, len(slots), DROP_CHUNK):
            async with self._call():
                dropped += await self._drop(
                    keys=self._keys(event_id),
                    args=self._args(event_id, -1, *slots[start : start + DROP_CHUNK]),
                )
        return dropped

    # --- operators -----------------------------------------------------------------------

    async def counts(self, event_id: str) -> Counts:
        async with self._call():
            raw = _fields(
                await self._stats(
                    keys=self._keys(event_id, self.prefix(event_id) + "log"),
                    args=self._args(event_id, -1),
                )
            )
        return Counts(
            vitals=_vitals(raw), admitted_total=int(raw[6]), admitted_last_minute=int(raw[7])
        )

    async def control(
        self,
        event_id: str,
        *,
        paused: bool | None,
        rate_per_minute: int | None,
        max_active: int | None,
        expire_at_ms: int,
    ) -> Vitals:
        def arg(value: int | bool | None) -> str:
            return "" if value is None else str(int(value))

        async with self._call():
            raw = await self._control(
                keys=self._keys(event_id),
                args=self._args(
                    event_id, -1, arg(paused), arg(rate_per_minute), arg(max_active), expire_at_ms
                ),
            )
        return _vitals(_fields(raw))
