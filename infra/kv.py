"""Small key-value primitives (counters with expiry, set-if-absent) on Redis or in memory.

Used for update de-duplication, throttling and lockouts. Redis when `REDIS_URL` is
set, so several bot processes share them; a process-local dict otherwise.

Every Redis client is built by `connect_redis` (or `redis_fsm` for aiogram's FSM), with
short timeouts and a couple of quick reconnects: a dead or hung Redis makes a command
fail within seconds (the user is told the service is busy) instead of hanging the
update, and redis-py reconnects by itself once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError

log = logging.getLogger(__name__)

# Redis answers in well under a millisecond; seconds mean it is gone or hung.
REDIS_SOCKET_TIMEOUT = 2.0
REDIS_CONNECT_TIMEOUT = 2.0
# A lost connection is retried twice at once (a restarted Redis, a dropped socket);
# a timeout is not retried, since the command may have run.
REDIS_RETRIES = 2
# aiogram's per-user update lock: held at most LOCK_TIMEOUT seconds (it expires by
# itself if its holder dies), waited for at most LOCK_WAIT seconds.
LOCK_TIMEOUT = 60
LOCK_WAIT = 30
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


def redis_fsm(
    url: str, ttl_seconds: int | None = None
) -> tuple[RedisStorage, ResilientRedisEventIsolation]:
    """aiogram's FSM storage and event isolation on Redis, with the same timeouts.

    With `ttl_seconds` (FSM_TTL_SECONDS) every write of a conversation's state or data
    (a Napza note typed and then abandoned, say) expires that long after it was made;
    without it they stay until the conversation ends."""
    ttl = ttl_seconds if ttl_seconds and ttl_seconds > 0 else None
    storage = RedisStorage(redis=connect_redis(url), state_ttl=ttl, data_ttl=ttl)
    isolation = ResilientRedisEventIsolation(
        storage.redis,
        storage.key_builder,
        lock_kwargs={"timeout": LOCK_TIMEOUT, "blocking_timeout": LOCK_WAIT},
    )
    return storage, isolation


class ResilientRedisEventIsolation(RedisEventIsolation):
    """aiogram's per-user lock, except that failing to release it is not an error.

    The update has been handled (and its answer sent) by the time the lock is
    released; if Redis went away meanwhile, raising would only make the bot tell the
    user something failed. The lock expires by itself after LOCK_TIMEOUT seconds.
    A lock that cannot be taken (Redis down, or held past LOCK_WAIT) still raises.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = LocalLocks()

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        # Updates of one user handled by this process queue here first, so only one of
        # them at a time polls Redis for the shared lock (a burst of a user's updates
        # would otherwise poll Redis every 0.1 s each and starve everyone's connections).
        async with self._local.hold(name):
            lock = self.redis.lock(name=name, **self.lock_kwargs, lock_class=Lock)
            if not await lock.acquire():
                raise LockError("the update lock was not released in time")
            try:
                yield None
            finally:
                try:
                    await lock.release()
                except RedisError as error:
                    log.warning(
                        "update lock not released (it will expire): %s", type(error).__name__
                    )


class LocalLocks:
    """asyncio locks by name, forgotten when nobody holds or waits for them (a lock per
    user kept for ever would grow with every user the process has seen)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncGenerator[None, None]:
        lock, users = self._locks.get(name, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[name] = (lock, users + 1)
        try:
            async with lock:
                yield None
        finally:
            lock, users = self._locks[name]
            if users <= 1:
                del self._locks[name]
            else:
                self._locks[name] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


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
        return self._clock()  # type: ignore[operator,no-any-return]

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
