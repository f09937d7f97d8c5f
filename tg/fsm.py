"""aiogram's FSM storage and per-user update lock on Redis, with the project's timeouts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from infra.kv import connect_redis

log = logging.getLogger(__name__)

# aiogram's per-user update lock: held at most LOCK_TIMEOUT seconds (it expires by
# itself if its holder dies), waited for at most LOCK_WAIT seconds.
LOCK_TIMEOUT = 60
LOCK_WAIT = 30


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
