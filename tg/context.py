"""The application's shared parts, built once from Settings and handed to every handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infra.kv import KeyValueStore
from infra.settings import Settings
from services.identity import Hasher
from services.lockout import FailureGuard


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """Everything a handler needs besides the update: injected as `ctx` by aiogram."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: KeyValueStore
    hasher: Hasher
    # Failed links, per Telegram account and per NIK; wrong shopping codes and KKS
    # numbers, per agent and per e-Warong; each under a country-wide ceiling a minute.
    link_guard: FailureGuard
    code_guard: FailureGuard
    province_codes: frozenset[str]
    clock: Callable[[], datetime] = field(default=utc_now)

    def now(self) -> datetime:
        return self.clock()

    async def close(self) -> None:
        await self.store.close()
        await self.engine.dispose()
