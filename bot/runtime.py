"""Running the bot: long polling or a webhook server (with /healthz)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from datetime import UTC, datetime

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from sqlalchemy import text

from bot.factory import create_bot, create_context, create_dispatcher
from infra import metrics
from infra.db import prepare_database
from infra.settings import Settings
from tg.context import AppContext

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/webhook"
CTX_KEY = web.AppKey("ctx", AppContext)

NO_TOKEN_HELP = """\
BOT_TOKEN is not set, so there is no Telegram bot to run.
To get a token, open Telegram, talk to @BotFather, send /newbot, choose a name
and a username ending in "bot", and copy the token it gives you
(it looks like 123456789:AAE...). Then start the bot with
    BOT_TOKEN=123456789:AAE... make run
or put BOT_TOKEN=... in a .env file in this folder. To use a self-hosted Bot API
server or an emulator instead of Telegram, also set TELEGRAM_API_URL."""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json), for log collectors. Log messages name
    events, ids and error types, never personal data (see README, Security and privacy)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


# Database drivers and SQLAlchemy's engine/pool loggers print SQL with its bound
# parameters (aiosqlite at DEBUG: the Napza note, relayed chat, NIK hashes) or result
# rows. They stay at WARNING whatever LOG_LEVEL is; only their warnings and errors,
# which carry no parameters, are kept.
QUIET_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")
QUIET_LEVEL = logging.WARNING


class QuietDriversFilter(logging.Filter):
    """Drops records below WARNING from the database loggers, in case something (a
    library, a debugging session) lowered their level again after configure_logging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= QUIET_LEVEL:
            return True
        return not any(
            record.name == name or record.name.startswith(name + ".") for name in QUIET_LOGGERS
        )


def configure_logging(level: int = logging.INFO, log_format: str | None = None) -> None:
    """Text lines by default; JSON lines with LOG_FORMAT=json. The database loggers
    (QUIET_LOGGERS) never log below WARNING, at any level, on every dialect."""
    fmt = log_format or os.environ.get("LOG_FORMAT", "text")
    handler = logging.StreamHandler()
    if fmt.lower() == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(QuietDriversFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(QUIET_LEVEL)


def start_embedded_worker(
    ctx: AppContext, bot: Bot, dp: Dispatcher
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """The worker (broadcast delivery; SLA expiry, escalation, purge) inside this process,
    on ctx's clock."""
    from bot.worker import (
        make_broadcast_engine,
        make_notify,
        make_outbox,
        run_engine,
        run_worker,
    )

    stop = asyncio.Event()
    i18n = dp.workflow_data["i18n"]
    notify = make_notify(bot, i18n, ctx.sessionmaker)
    outbox = make_outbox(bot, i18n, ctx.sessionmaker)
    engine = make_broadcast_engine(ctx.sessionmaker, ctx.settings, bot, i18n, ctx.now)

    async def both() -> None:
        await asyncio.gather(
            run_worker(ctx.sessionmaker, notify, ctx.settings, ctx.now, stop, outbox),
            run_engine(engine, stop),
        )

    task = asyncio.create_task(both())
    return task, stop


async def stop_embedded_worker(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def run_polling(settings: Settings) -> None:
    await prepare_database(settings)
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    # Embedded (SQLite) mode has no separate `bansos-bot worker`: run it in-process.
    worker = start_embedded_worker(ctx, bot, dp) if settings.is_sqlite else None
    try:
        await bot.delete_webhook(drop_pending_updates=False)
        me = await bot.get_me()
        log.info("polling as @%s", me.username)
        await dp.start_polling(bot, handle_signals=True)
    finally:
        if worker is not None:
            await stop_embedded_worker(*worker)
        await bot.session.close()
        await ctx.close()


async def health(request: web.Request) -> web.Response:
    """200 when the database answers, 503 otherwise."""
    ctx = request.app[CTX_KEY]
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        log.warning("health check failed: %s", type(error).__name__)
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


class SecretTokenRequestHandler(SimpleRequestHandler):
    """aiogram's webhook handler, with the secret token compared as bytes in constant time.

    A request whose X-Telegram-Bot-Api-Secret-Token header is missing or wrong gets 401 and
    never reaches the dispatcher. aiogram compares str, which raises (a 500) on a non-ASCII
    header, and lets everything through when no secret is configured; this refuses both.
    """

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        if not self.secret_token:
            return False
        return hmac.compare_digest(
            telegram_secret_token.encode("utf-8", "surrogateescape"),
            self.secret_token.encode("utf-8"),
        )


def build_webhook_app(ctx: AppContext, bot: Bot, dp: Dispatcher) -> web.Application:
    """aiohttp app: POST /webhook (secret token required), GET /healthz and GET /metrics."""
    ctx.settings.check_webhook_secret()
    app = web.Application()
    app[CTX_KEY] = ctx
    # Handled before answering: a 2xx means done, so a failed update is redelivered.
    SecretTokenRequestHandler(
        dispatcher=dp,
        bot=bot,
        secret_token=ctx.settings.webhook_secret,
        handle_in_background=False,
    ).register(app, path=WEBHOOK_PATH)
    app.router.add_get("/healthz", health)
    setup_application(app, dp, bot=bot)
    return app


async def run_webhook(settings: Settings) -> None:
    # WEBHOOK_URL, WEBHOOK_SECRET and SECRET_KEY, before anything starts (ConfigurationError).
    settings.check_webhook()
    await prepare_database(settings)
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    app = build_webhook_app(ctx, bot, dp)
    await bot.set_webhook(settings.webhook_url, secret_token=settings.webhook_secret)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
    await site.start()
    # Metrics on their own port, not beside the public webhook.
    metrics_runner = (
        await metrics.serve(settings.metrics_port, ctx.sessionmaker, host=settings.webhook_host)
        if settings.metrics_port
        else None
    )
    log.info("webhook listening on %s:%s", settings.webhook_host, settings.webhook_port)
    try:
        await asyncio.Event().wait()
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await runner.cleanup()
        await ctx.close()
