"""Small key-value primitives (counters with expiry, set-if-absent) on Redis or in memory.

Used for update de-duplication, throttling and lockouts. Redis when `REDIS_URL` is
set, so several bot processes share them; a process-local dict otherwise.

Every Redis client is built by `connect_redis` (`tg.fsm.redis_fsm` for aiogram's FSM), with
short timeouts and a couple of quick reconnects: a dead or hung Redis makes a command
fail within seconds (the user is told the service is busy) instead of hanging the
update, and redis-py reconnects by itself once Redis is back.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

# Redis answers in well under a millisecond; seconds mean it is gone or hung.
REDIS_SOCKET_TIMEOUT = 2.0
REDIS_CONNECT_TIMEOUT = 2.0
# A lost connection is retried twice at once (a restarted Redis, a dropped socket);
# a timeout is not retried, since the command may have run.
REDIS_RETRIES = 2
# Connections per client (per process), and how long a command waits for a free one.
REDIS_MAX_CONNECTIONS = 64
REDIS_POOL_WAIT = 5.0


def redis_options() -> dict[str, Any]:
    """Connection settings for every Redis client of the application."""
    return {
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "retry": Retry(
            ExponentialBackoff(cap=0.25, base=0.05),
            REDIS_RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
    }


def connect_redis(url: str) -> Redis:
    """A Redis client (lazy: it connects on first use) with the application's timeouts.

    Its pool waits (up to REDIS_POOL_WAIT seconds) for a free connection when all
    REDIS_MAX_CONNECTIONS are busy: redis-py's default pool fails at once beyond 100,
    so a burst of a few hundred concurrent updates would make some of them fail."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=REDIS_MAX_CONNECTIONS, timeout=REDIS_POOL_WAIT, **redis_options()
    )
    return Redis(connection_pool=pool)


class KeyValueStore(Protocol):
    async def set_if_absent(self, key: str, ttl: float) -> bool:
        """Set `key` for `ttl` seconds unless it exists; True when this call set it."""

    async def delete(self, key: str) -> None:
        """Remove `key`."""

    async def incr(self, key: str, ttl: float) -> int:
        """Add one to the counter at `key`; the first increment starts its `ttl`."""

    async def expire(self, key: str, ttl: float) -> None:
        """Let `key` live `ttl` more seconds from now."""

    async def get_int(self, key: str) -> int:
        """The counter at `key`, 0 when absent or expired."""

    async def ttl(self, key: str) -> float:
        """Seconds until `key` expires, 0 when absent."""

    async def close(self) -> None:
        """Release connections."""


class MemoryStore:
    """A process-local store with lazy expiry; the embedded default."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, tuple[int, float]] = {}

    def _now(self) -> float:
        return self._clock()

    def _live(self, key: str) -> tuple[int, float] | None:
        item = self._values.get(key)
        if item is not None and item[1] <= self._now():
            del self._values[key]
            return None
        return item

    async def set_if_absent(self, key: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._values[key] = (1, self._now() + ttl)
        if len(self._values) > 100_000:
            self._sweep()
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        item = self._live(key)
        value, expires = item if item else (0, self._now() + ttl)
        self._values[key] = (value + 1, expires)
        return value + 1

    async def expire(self, key: str, ttl: float) -> None:
        if (item := self._live(key)) is not None:
            self._values[key] = (item[0], self._now() + ttl)

    async def get_int(self, key: str) -> int:
        item = self._live(key)
        return item[0] if item else 0

    async def ttl(self, key: str) -> float:
        item = self._live(key)
        return max(0.0, item[1] - self._now()) if item else 0.0

    async def close(self) -> None:
        self._values.clear()

    def _sweep(self) -> None:
        now = self._now()
        for key in [k for k, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]


class RedisStore:
    """The same primitives on Redis, shared by every bot and worker process."""

    def __init__(self, redis: Redis, prefix: str = "bansos:") -> None:
        self._redis = redis
        self._prefix = prefix

    async def set_if_absent(self, key: str, ttl: float) -> bool:
        return bool(await self._redis.set(self._prefix + key, 1, nx=True, px=int(ttl * 1000)))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def incr(self, key: str, ttl: float) -> int:
        full = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.pexpire(full, int(ttl * 1000), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def expire(self, key: str, ttl: float) -> None:
        await self._redis.pexpire(self._prefix + key, int(ttl * 1000))

    async def get_int(self, key: str) -> int:
        value = await self._redis.get(self._prefix + key)
        return int(value) if value is not None else 0

    async def ttl(self, key: str) -> float:
        millis = await self._redis.pttl(self._prefix + key)
        return max(0.0, millis / 1000) if millis and millis > 0 else 0.0

    async def close(self) -> None:
        await self._redis.aclose()
