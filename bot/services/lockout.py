"""Counting failed attempts and locking an account out for a while (Redis or memory)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.kv import KeyValueStore


@dataclass(frozen=True)
class Lockout:
    """After `max_failures` failures within `seconds`, `name` is locked for `seconds`."""

    store: KeyValueStore
    name: str
    max_failures: int = 5
    seconds: int = 3600

    def _key(self, subject: int | str) -> str:
        return f"lock:{self.name}:{subject}"

    async def locked_for(self, subject: int | str) -> float:
        """Seconds left of the lock on `subject`, 0 when not locked."""
        key = self._key(subject)
        if await self.store.get_int(key) >= self.max_failures:
            return await self.store.ttl(key)
        return 0.0

    async def fail(self, subject: int | str) -> int:
        """Count a failure; returns how many attempts are left (0 means now locked)."""
        key = self._key(subject)
        failures = await self.store.incr(key, self.seconds)
        if failures >= self.max_failures:
            await self.store.expire(key, self.seconds)  # the lock lasts from the last failure
        return max(0, self.max_failures - failures)

    async def clear(self, subject: int | str) -> None:
        await self.store.delete(self._key(subject))
