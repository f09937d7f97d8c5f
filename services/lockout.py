"""Counting failed attempts and locking a subject out for a while (Redis or memory).

A `Lockout` counts failures of one kind of subject (a Telegram account, a NIK hash, an
e-Warong); a `Ceiling` counts failures of everyone per minute; a `FailureGuard` counts
one failure against several lockouts and the ceiling at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.kv import KeyValueStore

WINDOW_SECONDS = 60


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


@dataclass(frozen=True)
class Ceiling:
    """At most `limit` events a minute across everyone (fixed one-minute windows).

    Past it, the guarded action pauses for everyone until the window ends: a flood of
    failures from many accounts or shops at once is an attack, not bad luck.
    """

    store: KeyValueStore
    name: str
    limit: int
    clock: Callable[[], float] = time.time

    def _key(self) -> tuple[str, float]:
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        return f"ceiling:{self.name}:{window}", (window + 1) * WINDOW_SECONDS - now

    async def locked_for(self) -> float:
        """Seconds until the window ends when the ceiling is reached, else 0."""
        key, left = self._key()
        return left if await self.store.get_int(key) >= self.limit else 0.0

    async def count(self) -> None:
        key, _ = self._key()
        await self.store.incr(key, 2 * WINDOW_SECONDS)


@dataclass(frozen=True)
class FailureGuard:
    """Failures counted at once against several subjects (an account and the NIK it
    typed; an agent and their e-Warong) and under a global ceiling.

    `lockouts` names each lockout by the kind of subject it counts; calls pass one
    value per kind, and a None value is not counted (e.g. no NIK typed yet).
    """

    lockouts: dict[str, Lockout]
    ceiling: Ceiling

    async def locked_for(self, **subjects: int | str | None) -> float:
        """The longest lock among the subjects' and the ceiling's, 0 when free."""
        waits = [await self.ceiling.locked_for()]
        for kind, subject in subjects.items():
            if subject is not None:
                waits.append(await self.lockouts[kind].locked_for(subject))
        return max(waits)

    async def fail(self, **subjects: int | str | None) -> int:
        """Count a failure for every subject; the fewest attempts left (0: now locked)."""
        await self.ceiling.count()
        left = [
            await self.lockouts[kind].fail(subject)
            for kind, subject in subjects.items()
            if subject is not None
        ]
        return min(left, default=0)

    async def clear(self, kind: str, subject: int | str) -> None:
        await self.lockouts[kind].clear(subject)

    @property
    def seconds(self) -> int:
        return max(lockout.seconds for lockout in self.lockouts.values())
