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

About 100 bytes per waiting buyer with 36-character user ids (bench/queue_redis_memory.py).
Every script reads the clock with Redis TIME, so all processes share one clock. Scripts touch
keys they derive from the prefix (slot blocks, user buckets, epochs): fine on one Redis, and on a
cluster the hash tag keeps them on the node of the declared keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
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
from ticketing_common.errors import Unavailable

BLOCK = 256
EVENTS_KEY = "queue:events"
LEASE_KEY = "queue:admitter"
# The admitter looks at no more slots than this per call (a long run of gone slots is
# crossed over several ticks instead of blocking Redis).
MAX_SCAN = 5000
# Slots per DROP call.
DROP_CHUNK = 2000
# Buyers per batch call (TOUCH, STANDINGS).
BATCH = 1000

_PRELUDE = """
local P = ARGV[1]
local EPOCH_MS = tonumber(ARGV[2])
local OPEN_MS = tonumber(ARGV[3])
local STATE, GONE, ACTIVE = KEYS[1], KEYS[2], KEYS[3]
local BLOCK = %(block)d
local ALIVE_EPOCHS = %(epochs)d
local DRAW_SPAN = %(draw_span)d

local function fmt(n) return string.format('%%d', n) end
local NOW
do
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local EPOCH = math.floor(NOW / EPOCH_MS)

local function slot_key(slot) return P .. 's:' .. fmt(math.floor(slot / BLOCK)) end
local function alive_key(k) return P .. 'alive:' .. fmt(k) end
local function user_key(b) return P .. 'u:' .. b end

local function is_alive(slot)
  for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
    if redis.call('GETBIT', alive_key(k), slot) == 1 then return true end
  end
  return false
end

local function touch(slot)
  local key = alive_key(EPOCH)
  redis.call('SETBIT', key, slot, 1)
  redis.call('PEXPIRE', key, EPOCH_MS * (ALIVE_EPOCHS + 1))
end

-- Whether the line is sealed (the sale opened); seals it at the first look after opening.
local function sealed()
  if redis.call('HGET', STATE, 'sealed') then return true end
  if NOW < OPEN_MS then return false end
  if redis.call('EXISTS', STATE) == 1 then redis.call('HSET', STATE, 'sealed', '1') end
  return true
end

local function head() return tonumber(redis.call('HGET', STATE, 'head') or '0') end

-- Set bits of KEY in [from, to).
local function popcount(key, from, to)
  if to <= from then return 0 end
  local c = 0
  local fb, lb = math.floor(from / 8), math.floor((to - 1) / 8)
  if fb == lb then
    for b = from, to - 1 do c = c + redis.call('GETBIT', key, b) end
    return c
  end
  for b = from, (fb + 1) * 8 - 1 do c = c + redis.call('GETBIT', key, b) end
  if lb - 1 >= fb + 1 then c = c + redis.call('BITCOUNT', key, fb + 1, lb - 1) end
  for b = lb * 8, to - 1 do c = c + redis.call('GETBIT', key, b) end
  return c
end

-- kind ('w' in line, 'a' admitted, 'l' left), slot or expiry, join second
local function parse(rec)
  local c = string.sub(rec, 1, 1)
  if c == 'a' then
    local e, j = string.match(rec, '^a(%%d+):(%%d+)$')
    return 'a', tonumber(e), tonumber(j)
  elseif c == 'l' then
    return 'l', -1, tonumber(string.sub(rec, 2))
  end
  local s, j = string.match(rec, '^(%%d+):(%%d+)$')
  return 'w', tonumber(s), tonumber(j)
end

-- {kind, slot or expiry, position, join second} of one buyer
local function standing(ukey, user, hd, is_sealed, do_touch)
  local rec = redis.call('HGET', ukey, user)
  if not rec then return {'none', -1, 0, 0} end
  local kind, x, join = parse(rec)
  if kind == 'w' then
    if x < hd or redis.call('GETBIT', GONE, x) == 1 then return {'dropped', x, 0, join} end
    if do_touch then touch(x) end
    if not is_sealed then return {'pre', x, 0, join} end
    return {'wait', x, 1 + x - hd - popcount(GONE, hd, x), join}
  elseif kind == 'a' then
    if x > NOW then return {'admitted', x, 0, join} end
    return {'expired', x, 0, join}
  end
  return {'left', -1, 0, join}
end

-- The line's vital signs: now, waiting, active, paused, rate, cap
local function vitals()
  local s = redis.call('HMGET', STATE, 'waiting', 'paused', 'rate', 'cap')
  local active = redis.call('ZCOUNT', ACTIVE, '(' .. fmt(NOW), '+inf')
  return {NOW, tonumber(s[1] or '0'), active, s[2] or '', s[3] or '', s[4] or ''}
end

-- One bulk string of '|'-separated fields: far cheaper for the client to read than an array.
local function packed(out)
  for i, v in ipairs(out) do
    if type(v) == 'number' then out[i] = fmt(v) end
  end
  return table.concat(out, '|')
end

local function reply(st)
  local out = vitals()
  for _, v in ipairs(st) do out[#out + 1] = v end
  return packed(out)
end
"""

_JOIN = """
local ukey, user, bucket, expire_at = KEYS[4], ARGV[4], ARGV[5], ARGV[7]
local is_sealed = sealed()
local st = standing(ukey, user, head(), is_sealed, true)
if st[1] == 'pre' or st[1] == 'wait' or st[1] == 'admitted' then return reply(st) end

-- The buyer now at slot j moves to the new slot i (inside-out Fisher-Yates), with its bits.
local function move(j, i)
  local v = redis.call('HGET', slot_key(j), fmt(j % BLOCK))
  redis.call('HSET', slot_key(i), fmt(i % BLOCK), v)
  redis.call('PEXPIREAT', slot_key(i), expire_at)
  local b, mover = string.match(v, '^(%d+):(.*)$')
  local mkey = user_key(b)
  local rec = redis.call('HGET', mkey, mover)
  if rec then
    local kind, x, join = parse(rec)
    if kind == 'w' and x == j then redis.call('HSET', mkey, mover, fmt(i) .. ':' .. fmt(join)) end
  end
  redis.call('SETBIT', GONE, i, redis.call('GETBIT', GONE, j))
  for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
    local key = alive_key(k)
    if redis.call('EXISTS', key) == 1 then
      redis.call('SETBIT', key, i, redis.call('GETBIT', key, j))
      redis.call('SETBIT', key, j, 0)
    end
  end
end

local i = redis.call('HINCRBY', STATE, 'n', 1) - 1
local waiting = redis.call('HINCRBY', STATE, 'waiting', 1)
local slot = i
if not is_sealed then
  slot = math.min(i, math.floor(tonumber(ARGV[6]) / DRAW_SPAN * (i + 1)))
  if slot ~= i then move(slot, i) end
end
local join = math.floor(NOW / 1000)
redis.call('HSET', slot_key(slot), fmt(slot % BLOCK), bucket .. ':' .. user)
redis.call('HSET', ukey, user, fmt(slot) .. ':' .. fmt(join))
redis.call('SETBIT', GONE, slot, 0)
touch(slot)
redis.call('SADD', KEYS[5], ARGV[8])
for _, key in ipairs({STATE, GONE, ukey, slot_key(slot)}) do
  redis.call('PEXPIREAT', key, expire_at)
end
if is_sealed then return reply({'wait', slot, waiting, join}) end
return reply({'pre', slot, 0, join})
"""

_POSITION = """
local is_sealed = sealed()
return reply(standing(KEYS[4], ARGV[4], head(), is_sealed, true))
"""

_LEAVE = """
local ukey, user = KEYS[4], ARGV[4]
local st = standing(ukey, user, head(), sealed(), false)
local kind = st[1]
if kind == 'none' then return reply(st) end
if kind == 'pre' or kind == 'wait' then
  redis.call('SETBIT', GONE, st[2], 1)
  redis.call('HINCRBY', STATE, 'waiting', -1)
elseif kind == 'admitted' then
  redis.call('ZREM', ACTIVE, user)
end
if kind ~= 'left' then redis.call('HSET', ukey, user, 'l' .. fmt(st[4])) end
return reply({'left', -1, 0, st[4]})
"""

# ARGV[4..]: bucket, user pairs. Reply: vitals, sealed, head, then 4 fields per buyer.
_STANDINGS = """
local is_sealed = sealed()
local hd = head()
local out = vitals()
out[#out + 1] = is_sealed and 1 or 0
out[#out + 1] = hd
for a = 4, #ARGV, 2 do
  local st = standing(user_key(ARGV[a]), ARGV[a + 1], hd, is_sealed, false)
  for _, v in ipairs(st) do out[#out + 1] = v end
end
return packed(out)
"""

# ARGV[4..]: bucket, user pairs of watchers: their places are kept.
_TOUCH = """
local hd = head()
local touched = 0
for a = 4, #ARGV, 2 do
  local rec = redis.call('HGET', user_key(ARGV[a]), ARGV[a + 1])
  if rec then
    local kind, x = parse(rec)
    if kind == 'w' and x >= hd and redis.call('GETBIT', GONE, x) == 0 then
      touch(x)
      touched = touched + 1
    end
  end
end
return touched
"""

# ARGV[4]: the highest slot of interest. Reply: vitals, sealed, head, n, gone bits from head.
_SNAPSHOT = """
local is_sealed = sealed()
local hd = head()
local upto = tonumber(ARGV[4])
local out = vitals()
out[#out + 1] = is_sealed and 1 or 0
out[#out + 1] = hd
out[#out + 1] = tonumber(redis.call('HGET', STATE, 'n') or '0')
local gone = ''
if upto >= hd then gone = redis.call('GETRANGE', GONE, math.floor(hd / 8), math.floor(upto / 8)) end
return {packed(out), gone}
"""

# The admitter's read: vitals (after dropping expired admissions), tokens, tokens_ms, sealed.
_PACE = """
redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', NOW)
local out = vitals()
local s = redis.call('HMGET', STATE, 'tokens', 'tokens_ms')
out[#out + 1] = s[1] or ''
out[#out + 1] = s[2] or ''
out[#out + 1] = sealed() and 1 or 0
return packed(out)
"""

# Fenced by the lease in KEYS[4]. ARGV: 4 owner, 5 limit, 6 tokens (refilled), 7 tokens_ms,
# 8 admission ttl ms, 9 max slots to scan, 10 expire_at. Reply: admitted, dropped, head.
_ADMIT = """
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return {-1, 0, 0} end
if not sealed() then return {0, 0, head()} end
local limit, tokens = tonumber(ARGV[5]), tonumber(ARGV[6])
local ttl, max_scan = tonumber(ARGV[8]), tonumber(ARGV[9])
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local admitted, dropped, scanned = 0, 0, 0
local expire = NOW + ttl
while admitted < limit and hd < n and scanned < max_scan do
  if redis.call('GETBIT', GONE, hd) == 0 then
    if is_alive(hd) then
      local v = redis.call('HGET', slot_key(hd), fmt(hd % BLOCK))
      local b, user = string.match(v or '', '^(%d+):(.*)$')
      if b then
        local ukey = user_key(b)
        local rec = redis.call('HGET', ukey, user)
        if rec then
          local kind, x, join = parse(rec)
          if kind == 'w' and x == hd then
            redis.call('HSET', ukey, user, 'a' .. fmt(expire) .. ':' .. fmt(join))
            redis.call('ZADD', ACTIVE, expire, user)
            admitted = admitted + 1
          end
        end
      end
    else
      redis.call('SETBIT', GONE, hd, 1)
      dropped = dropped + 1
    end
  end
  hd = hd + 1
  scanned = scanned + 1
  if hd % BLOCK == 0 then redis.call('DEL', slot_key(hd - 1)) end
end
local left = string.format('%.6f', math.max(0, tokens - admitted))
redis.call('HSET', STATE, 'head', hd, 'tokens', left, 'tokens_ms', ARGV[7])
if admitted + dropped > 0 then redis.call('HINCRBY', STATE, 'waiting', -(admitted + dropped)) end
if admitted > 0 then
  redis.call('HINCRBY', STATE, 'admitted', admitted)
  redis.call('ZADD', KEYS[5], NOW, fmt(NOW) .. ':' .. fmt(admitted))
  redis.call('PEXPIREAT', ACTIVE, ARGV[10])
end
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', NOW - 60000)
redis.call('PEXPIRE', KEYS[5], 120000)
return {admitted, dropped, hd}
"""

# The sweeper's read: now, head, n, then gone and the alive bitmaps from head's byte to n's.
_SWEEP_READ = """
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local out = {NOW, hd, n}
if n <= hd then return out end
local first, last = math.floor(hd / 8), math.floor((n - 1) / 8)
out[#out + 1] = redis.call('GETRANGE', GONE, first, last)
for k = EPOCH - ALIVE_EPOCHS + 1, EPOCH do
  out[#out + 1] = redis.call('GETRANGE', alive_key(k), first, last)
end
return out
"""

# ARGV[4..]: slots the sweeper found stale; each is checked again here.
_DROP = """
local hd = head()
local n = tonumber(redis.call('HGET', STATE, 'n') or '0')
local dropped = 0
for a = 4, #ARGV do
  local slot = tonumber(ARGV[a])
  if slot >= hd and slot < n and redis.call('GETBIT', GONE, slot) == 0 and not is_alive(slot) then
    redis.call('SETBIT', GONE, slot, 1)
    dropped = dropped + 1
  end
end
if dropped > 0 then redis.call('HINCRBY', STATE, 'waiting', -dropped) end
return dropped
"""

# KEYS[4]: the admission log. Reply: vitals, admitted total, admitted over the last minute.
_STATS = """
local out = vitals()
out[#out + 1] = tonumber(redis.call('HGET', STATE, 'admitted') or '0')
local last = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. fmt(NOW - 60000), '+inf')) do
  last = last + tonumber(string.match(m, ':(%d+)$'))
end
out[#out + 1] = last
return packed(out)
"""

# ARGV: 4 paused ('' leaves it, '0'/'1'), 5 rate ('' leaves it), 6 cap, 7 expire_at.
_CONTROL = """
if ARGV[4] ~= '' then redis.call('HSET', STATE, 'paused', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', STATE, 'rate', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', STATE, 'cap', ARGV[6]) end
if redis.call('TTL', STATE) < 0 then redis.call('PEXPIREAT', STATE, ARGV[7]) end
return packed(vitals())
"""

_LEASE = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

# Give the lease up, if this process still holds it (compare and delete).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _script(body: str) -> str:
    prelude = _PRELUDE % {"block": BLOCK, "epochs": ALIVE_EPOCHS, "draw_span": DRAW_SPAN}
    return prelude + body


class LeaseLost(Exception):
    """The admitter's lease passed to another process; its write was refused."""


@dataclasses.dataclass(frozen=True, slots=True)
class Vitals:
    now_ms: int
    waiting: int
    active: int
    controls: Controls


@dataclasses.dataclass(frozen=True, slots=True)
class LineView:
    """What watchers of one event need from one read."""

    vitals: Vitals
    sealed: bool
    head: int
    n: int
    gone: bytes  # the gone-bitmap from byte head // 8


@dataclasses.dataclass(frozen=True, slots=True)
class PaceView:
    vitals: Vitals
    bucket: Bucket | None
    sealed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    admitted: int
    dropped: int
    head: int


@dataclasses.dataclass(frozen=True, slots=True)
class SweepView:
    now_ms: int
    head: int
    n: int
    gone: bytes
    alive: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    vitals: Vitals
    admitted_total: int
    admitted_last_minute: int


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
        self._join = register(_script(_JOIN))
        self._position = register(_script(_POSITION))
        self._leave = register(_script(_LEAVE))
        self._standings = register(_script(_STANDINGS))
        self._touch = register(_script(_TOUCH))
        self._snapshot = register(_script(_SNAPSHOT))
        self._pace = register(_script(_PACE))
        self._admit = register(_script(_ADMIT))
        self._sweep_read = register(_script(_SWEEP_READ))
        self._drop = register(_script(_DROP))
        self._stats = register(_script(_STATS))
        self._control = register(_script(_CONTROL))
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
