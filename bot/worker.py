"""The background worker: broadcast delivery, Napza SLA expiry/escalation and purge.

Broadcast delivery is `services.broadcasts.engine.BroadcastEngine`, run beside the Napza loop
(`make_broadcast_engine` builds it for a Bot).

`bansos-bot worker` runs `run_worker_process`; embedded mode can run
`run_worker` in-process. All state lives in the database (deadlines in
`help_requests.sla_due_at`), so a restart loses nothing, and several workers
can run at once: `expire_due` moves each request at most once (see
`services.napza.routing`).

Each tick commits its routing changes first and only then notifies, so a
notification is never sent for a change that was rolled back; a crash between
the commit and the notification loses that notification (at most once).

Purge runs on every tick, after expiry: it closes open requests with no activity
for NAPZA_RETENTION_DAYS ("tidak_ada_aktivitas") and drops the note and relayed
chat of finished requests idle that long. It reads through the
(status, last_activity_at) index, so it is cheap, and there is no "last purge"
state to keep.

This module never imports aiogram at import time; the chat layer supplies
`notify` (or `run_worker_process` builds one from `tg.notify.napza`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.ratelimit import create_rate_limiter
from infra.settings import Settings
from services.broadcasts.engine import BroadcastEngine, EngineConfig, create_progress_engine
from services.napza.retention import purge
from services.napza.routing import Delivery, SlaPolicy, expire_due
from tg.context import utc_now

log = logging.getLogger("bansos.worker")

Notify = Callable[[Delivery], Awaitable[None]]
Clock = Callable[[], datetime]
# Sends the outbox's waiting notices (unlinked, removed, deactivated…); `tg.notify.outbox`.
Outbox = Callable[[datetime], Awaitable[int]]
MAX_BACKOFF_SECONDS = 300.0
EXPIRE_BATCH = 100


def _parts(ctx_like: Any) -> tuple[async_sessionmaker[AsyncSession], Settings]:
    """(sessionmaker, settings) of an AppContext-like object."""
    return ctx_like.sessionmaker, ctx_like.settings


async def worker_tick(ctx_like: Any, now: datetime) -> list[Delivery]:
    """One pass: expire overdue offers (re-route or escalate) and purge old requests.

    `ctx_like` is anything with `.sessionmaker` and `.settings` (an AppContext).
    Expiry runs in batches of 100 per transaction until nothing is due; the purge
    in its own transaction. Returns the deliveries to notify.
    """
    sessionmaker, settings = _parts(ctx_like)
    sla = SlaPolicy.from_settings(settings)
    deliveries: list[Delivery] = []
    while True:
        async with sessionmaker() as session, session.begin():
            batch = await expire_due(session, sla, now, limit=EXPIRE_BATCH)
        deliveries.extend(batch)
        if len(batch) < EXPIRE_BATCH:
            break
    async with sessionmaker() as session, session.begin():
        purged = await purge(session, now, timedelta(days=settings.napza_retention_days))
    if purged:
        log.info("purged %d napza request(s)", purged)
    return deliveries


class _Ctx:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))


async def run_worker(
    sessionmaker: async_sessionmaker[AsyncSession],
    notify: Notify,
    settings: Settings,
    clock: Clock,
    stop: asyncio.Event,
    outbox: Outbox | None = None,
) -> None:
    """Tick every `worker_interval_seconds` until `stop` is set; never dies on an error.

    A failing tick is logged (exception type only: messages may hold data) and
    the wait doubles up to 5 minutes; a failing `notify` for one delivery does
    not stop the others.
    """
    ctx = _Ctx(sessionmaker, settings)
    interval = max(float(settings.worker_interval_seconds), 0.0)
    backoff = interval
    while not stop.is_set():
        try:
            deliveries = await worker_tick(ctx, clock())
        except Exception as error:
            log.warning("worker tick failed: %s", type(error).__name__)
            backoff = min(max(backoff * 2, 1.0), MAX_BACKOFF_SECONDS)
            await _sleep_or_stop(stop, backoff)
            continue
        backoff = interval
        for delivery in deliveries:
            try:
                await notify(delivery)
            except Exception as error:
                log.warning(
                    "notify failed for request %s: %s", delivery.request.id, type(error).__name__
                )
        if outbox is not None:
            try:
                await outbox(clock())
            except Exception as error:  # the notices wait for the next tick
                log.warning("outbox delivery failed: %s", type(error).__name__)
        await _sleep_or_stop(stop, interval)


def make_notify(bot: Any, i18n: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> Notify:
    """A `notify` that sends a delivery with `tg.notify.napza.send_deliveries`."""
    from tg.notify.napza import send_deliveries

    async def notify(delivery: Delivery) -> None:
        async with sessionmaker() as session, session.begin():
            await send_deliveries(bot, i18n, session, [delivery])

    return notify


def make_outbox(bot: Any, i18n: Any, sessionmaker: async_sessionmaker[AsyncSession]) -> Outbox:
    """An `outbox` step that sends waiting notices with `tg.notify.outbox.deliver_outbox`."""
    from tg.notify.outbox import deliver_outbox

    async def outbox(now: datetime) -> int:
        return await deliver_outbox(bot, i18n, sessionmaker, now)

    return outbox


def make_broadcast_engine(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    bot: Any,
    i18n: Any,
    clock: Clock,
) -> BroadcastEngine:
    """The delivery engine for a Bot: copyMessage sends, the shared rate limiter (Redis
    when REDIS_URL is set), progress reports in the admin's chat, and metrics."""
    from infra import metrics
    from tg.broadcast_sender import BotApiSender
    from tg.notify.broadcasts import make_reporter

    config = EngineConfig.from_settings(settings)
    return BroadcastEngine(
        sessionmaker,
        BotApiSender(bot.token, settings.telegram_api_url, paid=settings.paid_broadcast),
        create_rate_limiter(settings),
        make_reporter(bot, i18n, sessionmaker, clock),
        clock,
        config,
        observe=metrics.observe_broadcast,
        progress=create_progress_engine(settings.database_url, config.concurrency),
    )


async def run_engine(engine: BroadcastEngine, stop: asyncio.Event) -> None:
    try:
        await engine.run(stop)
    finally:
        await engine.close()


async def run_worker_process(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """`bansos-bot worker`: Napza checks and broadcast delivery until `stop` (or a signal)."""
    from bot.factory import create_bot, create_i18n
    from infra.db import create_engine, create_sessionmaker, prepare_database

    await prepare_database(settings)
    engine = create_engine(settings.database_url)
    sessionmaker = create_sessionmaker(engine)
    bot = create_bot(settings)
    stop = stop or asyncio.Event()
    metrics_runner = None
    try:
        i18n = create_i18n(settings)
        notify = make_notify(bot, i18n, sessionmaker)
        engine_ = make_broadcast_engine(sessionmaker, settings, bot, i18n, utc_now)
        if settings.metrics_port:
            from infra import metrics

            metrics_runner = await metrics.serve(
                settings.metrics_port, sessionmaker, host=settings.webhook_host
            )
        log.info("worker started (every %ss)", settings.worker_interval_seconds)
        outbox = make_outbox(bot, i18n, sessionmaker)
        await asyncio.gather(
            run_worker(sessionmaker, notify, settings, utc_now, stop, outbox),
            run_engine(engine_, stop),
        )
    finally:
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await bot.session.close()
        await engine.dispose()
        log.info("worker stopped")
