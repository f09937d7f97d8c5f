"""Shared fixtures: a migrated database (SQLite, or TEST_DATABASE_URL) and settings.

The database is migrated and loaded with the real region list once per test run;
every test starts from empty registry/account tables.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker, upgrade_database
from infra.settings import Settings
from models import Base
from tests.support.inprocess import InProcess, recording_bot

KEPT_TABLES = {"regions", "pkh_component_rates", "alembic_version"}
TEST_SECRET = "test-secret-key-not-for-production"


def _database_url(tmp_root: Path) -> str:
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_root / 'test.db'}"


async def _prepare(url: str) -> None:
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    await asyncio.to_thread(upgrade_database, url)
    from services.regions import REGION_DATA_DIR, import_regions

    engine = create_engine(url)
    await import_regions(create_sessionmaker(engine), REGION_DATA_DIR)
    await engine.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = _database_url(tmp_path_factory.mktemp("db"))
    asyncio.run(_prepare(url))
    return url


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    return os.environ.get("TEST_REDIS_URL") or None


@pytest.fixture
def settings(database_url: str, redis_url: str | None) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=TEST_SECRET,
        bot_token="123456:TEST-token",
    )


async def _truncate(engine: AsyncEngine) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name not in KEPT_TABLES]
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await conn.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    await _truncate(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path


# ---------------------------------------------------------------------------
# The real bot, polling the Bot API emulator over real HTTP.

BOT_TOKEN = "123456:TEST-token"


class Harness:
    """The running bot and the emulator's control client, for conversation tests."""

    def __init__(self, ctx, bot, dp, client, emulator) -> None:
        self.ctx = ctx
        self.bot = bot
        self.dp = dp
        self.client = client
        self.emulator = emulator
        self._next_user = 1000

    async def deliver_notices(self) -> int:
        """Run the worker's outbox step once: send the notices waiting (unlinked, removed…)."""
        from tg.notify.outbox import deliver_outbox

        i18n = self.dp.workflow_data["i18n"]
        return await deliver_outbox(self.bot, i18n, self.ctx.sessionmaker, self.ctx.now())

    async def user(self, first_name: str = "Siti", **kwargs):
        """A new Telegram user talking to the bot in a private chat."""
        self._next_user += 1
        kwargs.setdefault("phone_number", None)
        return await self.client.user(self._next_user, first_name, **kwargs)


@pytest.fixture
async def clean_redis(redis_url: str | None) -> None:
    """Empty the test Redis database (FSM state, dedup keys, lockouts) before a test."""
    if redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(redis_url)
        await redis.flushdb()
        await redis.aclose()


@pytest.fixture
async def bot_app(
    request: pytest.FixtureRequest, settings: Settings, engine: AsyncEngine, clean_redis: None
) -> AsyncIterator[Harness]:
    """The bot polling a fresh emulator. Tests act faster than people, so the per-user
    throttle is off unless a test asks for it with `@pytest.mark.throttle(burst=N)`."""
    from bot.factory import create_bot, create_context, create_dispatcher
    from sandbox.client import EmulatorClient
    from sandbox.emulator import BotApiEmulator

    marker = request.node.get_closest_marker("throttle")
    settings.throttle_burst = marker.kwargs["burst"] if marker else 10_000
    if marker and "window" in marker.kwargs:
        settings.throttle_window = marker.kwargs["window"]
    emulator = BotApiEmulator(token=BOT_TOKEN)
    url = await emulator.start()
    settings.telegram_api_url = url
    settings.bot_token = BOT_TOKEN
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    started = asyncio.Event()

    async def _started() -> None:
        started.set()

    dp.startup.register(_started)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_as_tasks=False, handle_signals=False, polling_timeout=1)
    )
    await asyncio.wait_for(started.wait(), 10)
    client = EmulatorClient(url)
    try:
        yield Harness(ctx, bot, dp, client, emulator)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
        await client.close()
        await bot.session.close()
        await ctx.close()
        await emulator.stop()


@pytest.fixture
async def inprocess(
    settings: Settings, engine: AsyncEngine, clean_redis: None
) -> AsyncIterator[InProcess]:
    """The fast tier: the production dispatcher fed updates in process, its Bot API calls
    recorded and held against Telegram's published methods (tests/support/inprocess.py)."""
    from bot.factory import create_context, create_dispatcher

    settings.throttle_burst = 10_000
    ctx = await create_context(settings)
    bot, recording = recording_bot(BOT_TOKEN)
    try:
        yield InProcess(create_dispatcher(ctx), bot, recording)
    finally:
        await ctx.close()
    assert recording.refused == [], "calls Telegram would refuse"
