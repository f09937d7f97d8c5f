"""A global rate limit for broadcast delivery, shared by every worker process.

The limit is GCRA (the generic cell rate algorithm): one "theoretical arrival time"
(TAT) per limiter. With emission interval T = 1/rate and tolerance τ = T * (burst - 1),
a send is allowed at time `now` when `now >= max(TAT, now) - τ`, and then the TAT
moves on by T. Otherwise the caller sleeps until that moment and asks again.

With Redis the TAT lives in one key and the whole check-and-update is one Lua script
using the Redis server's clock, so workers on different machines agree on it. Without
Redis the same algorithm runs in process memory.

A 429 from Telegram (`retry_after`) is reported with `penalize()`: it pushes the shared
TAT past the pause, so the whole fleet waits, not just the worker that was told off.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from infra.settings import Settings

PAID_BROADCAST_RATE = 1000.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class RateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one send is allowed."""

    async def penalize(self, seconds: float) -> None:
        """Nobody sharing this limit sends until `seconds` from now (a 429's retry_after)."""

    async def close(self) -> None:
        """Release resources."""


def _check(rate: float, burst: int) -> None:
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number, got {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst!r}")


class MemoryRateLimiter:
    """GCRA in process memory: the limit for a single process.

    Waiters queue on an `asyncio.Lock` (first come, first served) and sleep for the
    computed delay while holding it, so there is no busy waiting and no stampede.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check(rate, burst)
        self.rate = float(rate)
        self.burst = int(burst)
        self._interval = 1.0 / self.rate
        self._tolerance = self._interval * (self.burst - 1)
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._tat = -math.inf

    def _try(self) -> float:
        """Take a slot and return 0, or return the seconds to wait before asking again."""
        now = self._clock()
        tat = max(self._tat, now)
        allow_at = tat - self._tolerance
        if now < allow_at:
            return allow_at - now
        self._tat = tat + self._interval
        return 0.0

    async def acquire(self) -> None:
        async with self._lock:
            while (delay := self._try()) > 0:
                await self._sleep(delay)

    async def penalize(self, seconds: float) -> None:
        if seconds <= 0:
            return
        # TAT - τ is the next allowed moment, so no burst is left right after the pause.
        self._tat = max(self._tat, self._clock() + seconds + self._tolerance)

    async def close(self) -> None:
        return None


# KEYS[1] = the TAT key; ARGV = emission interval, tolerance (both in microseconds).
# Returns 0 when a send is granted, else the microseconds to wait before asking again.
ACQUIRE_SCRIPT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return math.ceil(allow_at - now)
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl_ms)
return 0
"""

# KEYS[1] = the TAT key; ARGV = pause, tolerance (both in microseconds).
# Sets the TAT to max(TAT, now + pause + tolerance); returns the pause's end (microseconds).
PENALIZE_SCRIPT = """
local pause = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or 0
local target = now + pause + tolerance
if target > tat then
  local ttl_ms = math.ceil((target - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.17g', target), 'PX', ttl_ms)
end
return math.floor(now + pause)
"""


# KEYS[1] = the TAT key; ARGV = emission interval, tolerance, n slots, lookahead (all
# microseconds but n). Reserves n consecutive GCRA slots at once, the first at most
# `lookahead` ahead: returns {0, offset}, the first slot conforming `offset`
# microseconds from now (may be in the past) and slot i i intervals later; else
# {1, microseconds to wait before asking again}.
RESERVE_SCRIPT = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local lookahead = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '') or 0
if tat < now then
  tat = now
end
local allow_at = tat - tolerance
if allow_at - now > lookahead then
  return {1, math.ceil(allow_at - now - lookahead)}
end
local new_tat = tat + n * interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', ttl_ms)
return {0, math.floor(allow_at - now)}
"""


# How far ahead slots may be reserved, in batches: enough for a few workers' batches to
# be queued ahead of this one without a "wait" round trip; what a stopped worker had
# reserved and not used is lost, so it is kept short (40 ms at 1000/s).
LOOKAHEAD_BATCHES = 4


def _sha1(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


class RedisRateLimiter:
    """GCRA in Redis: one limit for every process using the same `name`.

    The TAT is kept at `{prefix}ratelimit:{name}` in microseconds of the Redis server's
    clock. Scripts run with EVALSHA and fall back to EVAL (which caches them again) when
    the server answers NOSCRIPT, e.g. after a restart or `SCRIPT FLUSH`.
    """

    def __init__(
        self,
        redis: Redis,
        name: str,
        rate: float,
        burst: int = 1,
        prefix: str = "bansos:",
        *,
        owns_connection: bool = False,
        sleep: Sleep = asyncio.sleep,
        batch: int = 1,
        clock: Clock = time.monotonic,
    ) -> None:
        _check(rate, burst)
        self.rate = float(rate)
        self.burst = int(burst)
        self.batch = max(int(batch), 1)
        self.key = f"{prefix}ratelimit:{name}"
        self._clock = clock
        self._lock = asyncio.Lock()
        self._slots: deque[float] = deque()
        self._redis = redis
        self._owns_connection = owns_connection
        self._sleep = sleep
        self._interval_us = 1_000_000 / self.rate
        self._tolerance_us = self._interval_us * (self.burst - 1)
        self._stale_after = max(self._tolerance_us, self._interval_us) / 1_000_000

    async def _eval(self, script: str, *args: float) -> Any:
        argv = [repr(float(arg)) for arg in args]
        try:
            return await self._redis.evalsha(_sha1(script), 1, self.key, *argv)
        except NoScriptError:
            return await self._redis.eval(script, 1, self.key, *argv)

    async def _run(self, script: str, *args: float) -> int:
        return int(await self._eval(script, *args))

    async def acquire(self) -> None:
        if self.batch > 1:
            await self._acquire_reserved()
            return
        args = (self._interval_us, self._tolerance_us)
        while (delay_us := await self._run(ACQUIRE_SCRIPT, *args)) > 0:
            await self._sleep(delay_us / 1_000_000)

    async def _acquire_reserved(self) -> None:
        """With `batch` > 1: one Redis call reserves `batch` consecutive slots of the
        shared schedule, handed out here at their own moments (a fast fleet then makes
        one Redis round trip per `batch` sends, not one per send).

        A slot more than the tolerance in the past is skipped: this process fell behind
        its own reservation (a busy event loop, a descheduled process), and sending on
        old slots would bunch up beyond the tolerance and meet flood control."""
        async with self._lock:
            while True:
                if not self._slots:
                    await self._reserve()
                delay = self._slots.popleft() - self._clock()
                if delay >= -self._stale_after:
                    break
        if delay > 0:
            await self._sleep(delay)

    async def _reserve(self) -> None:
        while True:
            code, value = await self._eval(
                RESERVE_SCRIPT, self._interval_us, self._tolerance_us, self.batch,
                self._interval_us * self.batch * LOOKAHEAD_BATCHES,
            )  # fmt: skip
            if int(code) == 0:
                break
            await self._sleep(int(value) / 1_000_000)
        first = self._clock() + int(value) / 1_000_000
        step = self._interval_us / 1_000_000
        self._slots.extend(first + i * step for i in range(self.batch))

    async def penalize(self, seconds: float) -> None:
        if seconds <= 0:
            return
        self._slots.clear()  # reserved before the pause: not to be used after it
        await self._run(PENALIZE_SCRIPT, seconds * 1_000_000, self._tolerance_us)

    async def close(self) -> None:
        if self._owns_connection:
            await self._redis.aclose()


def broadcast_rate(settings: Settings) -> float:
    """Messages per second for broadcasts: Telegram's paid limit or BROADCAST_RATE."""
    return PAID_BROADCAST_RATE if settings.paid_broadcast else float(settings.broadcast_rate)


def broadcast_burst(rate: float) -> int:
    """A small burst (10 ms worth of sends, at least 1) lets a sender that was late by a
    few milliseconds catch up, so the achieved rate stays at the configured one, while
    staying well below Telegram's own tolerance (the emulator allows a burst of 30)."""
    return max(1, int(rate / 100))


def create_rate_limiter(
    settings: Settings, redis: Redis | None = None, name: str = "broadcast"
) -> RateLimiter:
    """The broadcast limiter: on Redis (the given client, or REDIS_URL) when there is one,
    so all workers share it; in process memory otherwise.

    A client passed in stays the caller's to close; one made from REDIS_URL is closed
    by the limiter's `close()`.
    """
    rate = broadcast_rate(settings)
    burst = broadcast_burst(rate)
    batch = max(1, int(rate / 100))  # 10 ms of the schedule per Redis round trip
    if redis is not None:
        return RedisRateLimiter(redis, name, rate, burst, batch=batch)
    if settings.redis_url:
        from infra.kv import connect_redis

        return RedisRateLimiter(
            connect_redis(settings.redis_url), name, rate, burst, owns_connection=True,
            batch=batch,
        )  # fmt: skip
    return MemoryRateLimiter(rate, burst)
