"""Builds the bot, the dispatcher and the application context from Settings.

Nothing here runs at import time; tests, the CLI and the sandbox each build their own.
"""

from __future__ import annotations

import logging

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.utils.i18n import I18n
from redis.asyncio import Redis

from infra.db import PROJECT_ROOT, create_engine, create_sessionmaker
from infra.kv import KeyValueStore, MemoryStore, RedisStore, connect_redis
from infra.settings import Settings
from services import accounts
from services.identity import Hasher
from services.lockout import Ceiling, FailureGuard, Lockout
from services.regions import RegionDirectory
from tg.context import AppContext
from tg.fsm import redis_fsm
from tg.menus import set_menus
from tg.middlewares.account import AccountI18nMiddleware, AccountMiddleware
from tg.middlewares.db import DbSessionMiddleware
from tg.middlewares.dedup import UpdateDedupMiddleware
from tg.middlewares.errors import ErrorReplyMiddleware, reply_on_failure
from tg.middlewares.metrics import MetricsMiddleware
from tg.middlewares.private import PrivateChatsOnlyMiddleware
from tg.middlewares.throttle import ThrottleMiddleware
from tg.retry import RetryMiddleware
from tg.routers import all_routers

log = logging.getLogger(__name__)
LOCALES_DIR = PROJECT_ROOT / "locales"


def create_i18n(settings: Settings) -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=settings.default_locale, domain="messages")


class PlainHttpSession(AiohttpSession):
    """aiogram's session for a Bot API server reached over plain http (the sandbox's
    emulator, a self-hosted server beside the bot): closing it skips aiogram's 250 ms
    wait, which only gives TLS connections time to shut down."""

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def create_bot(settings: Settings) -> Bot:
    """A Bot talking to Telegram, or to TELEGRAM_API_URL (self-hosted server, emulator)."""
    if not settings.bot_token:
        raise RuntimeError("BOT_TOKEN is not set")
    session = None
    if settings.telegram_api_url:
        url = settings.telegram_api_url.rstrip("/")
        server = TelegramAPIServer.from_base(url)
        plain = url.startswith("http://")
        session = PlainHttpSession(api=server) if plain else AiohttpSession(api=server)
    bot = Bot(settings.bot_token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    bot.session.middleware(RetryMiddleware())  # 5xx, 429, timeouts: bounded retries
    return bot


def _redis(settings: Settings) -> Redis | None:
    return connect_redis(settings.redis_url) if settings.redis_url else None


def create_storage(settings: Settings) -> tuple[BaseStorage, BaseEventIsolation]:
    """FSM storage and event isolation: Redis when configured (state and data expire after
    FSM_TTL_SECONDS), else in process memory."""
    if settings.redis_url:
        return redis_fsm(settings.redis_url, settings.fsm_ttl_seconds)
    return MemoryStorage(), SimpleEventIsolation()


def create_store(settings: Settings) -> KeyValueStore:
    redis = _redis(settings)
    return RedisStore(redis) if redis is not None else MemoryStore()


async def create_context(settings: Settings) -> AppContext:
    """Open the database and key-value store and load what every update needs."""
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    store = create_store(settings)
    async with sessionmaker() as session, session.begin():
        regions = await RegionDirectory.load(session)
        await accounts.ensure_national_admins(session, settings.admin_ids)
    if not regions.province_codes:
        log.warning("the regions table is empty: run `bansos-bot import regions`")
    return AppContext(
        settings=settings,
        engine=engine,
        sessionmaker=sessionmaker,
        store=store,
        hasher=Hasher(settings.resolved_secret_key()),
        link_guard=link_guard(store, settings),
        code_guard=code_guard(store, settings),
        province_codes=regions.province_codes,
    )


def link_guard(store: KeyValueStore, settings: Settings) -> FailureGuard:
    """Failed account links: per Telegram account, per NIK, and a ceiling a minute."""
    seconds = settings.link_lockout_seconds
    return FailureGuard(
        {
            "account": Lockout(store, "link", settings.link_max_failures, seconds),
            "nik": Lockout(store, "link-nik", settings.link_nik_max_failures, seconds),
        },
        Ceiling(store, "link", settings.link_failures_per_minute),
    )


def code_guard(store: KeyValueStore, settings: Settings) -> FailureGuard:
    """Wrong shopping codes and KKS lookups: per agent, per e-Warong, and a ceiling."""
    seconds = settings.code_lockout_seconds
    return FailureGuard(
        {
            "agent": Lockout(store, "code", settings.code_max_failures, seconds),
            "ewarong": Lockout(store, "code-ewarong", settings.code_ewarong_max_failures, seconds),
        },
        Ceiling(store, "code", settings.code_failures_per_minute),
    )


def create_dispatcher(ctx: AppContext) -> Dispatcher:
    """The dispatcher with every router and middleware, in production order."""
    storage, isolation = create_storage(ctx.settings)
    dp = Dispatcher(storage=storage, events_isolation=isolation, ctx=ctx)
    i18n = create_i18n(ctx.settings)
    for middleware in (
        MetricsMiddleware(),
        PrivateChatsOnlyMiddleware(),
        UpdateDedupMiddleware(ctx.store),
        ThrottleMiddleware(
            ctx.store, ctx.settings.throttle_burst, ctx.settings.throttle_window, i18n
        ),
        DbSessionMiddleware(ctx.sessionmaker),
        AccountMiddleware(),
        AccountI18nMiddleware(i18n),
        ErrorReplyMiddleware(),
    ):
        dp.update.outer_middleware(middleware)
    dp.include_routers(*all_routers())
    dp.errors.register(reply_on_failure)  # failures before ErrorReplyMiddleware
    dp.startup.register(_set_menus)
    dp.workflow_data["i18n"] = i18n
    return dp


async def _set_menus(bot: Bot, i18n: I18n, ctx: AppContext) -> None:
    await set_menus(bot, i18n, ctx.sessionmaker)
