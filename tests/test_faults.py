"""Faults: Redis and PostgreSQL stop or restart mid-run; the Bot API fails, stalls or throttles.

Redis and PostgreSQL faults break real servers of the test's own (see
tests/support/servers.py: the shared CI services are never stopped); Bot API faults
use the emulator's fault switch. In every case the bot keeps polling (or serving its
webhook), tells the user what happened, loses no confirmed sale, charges none twice,
and works again by itself once the service is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiogram.exceptions import TelegramServerError
from aiogram.methods import SendMessage
from aiogram.types import Update
from aiohttp import web
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.factory import create_bot, create_context, create_dispatcher, create_i18n
from bot.runtime import WEBHOOK_PATH, build_webhook_app
from infra.db import create_engine, create_sessionmaker
from models import BpntWallet, LedgerEntry, Redemption
from sandbox.client import EmulatorClient
from sandbox.emulator import BotApiEmulator
from tests.conftest import BOT_TOKEN, _truncate
from tests.support.clock import install_clock
from tests.support.people import linked_kpm, make_agent
from tests.support.servers import (
    PostgresCluster,
    RedisServer,
    free_port,
    migrate,
    polling_bot,
    settings_for,
)
from tests.support.shopping import fill_basket, shopping_code, shopping_world
from tg.middlewares.db import DbSessionMiddleware
from tg.middlewares.errors import ErrorReplyMiddleware
from tg.retry import RetryMiddleware, retries_disabled

BUSY_ID = "Layanan sedang sibuk, coba lagi sebentar lagi."
BUSY_EN = "The service is busy, please try again in a moment."
NOT_DONE_ID = "Maaf, terjadi gangguan di sisi kami. Tidak ada yang berubah; silakan coba lagi."


async def _ready_app(app, sessionmaker, folder):
    app.ids = await shopping_world(sessionmaker, app.ctx.hasher, folder)
    install_clock(app)
    return app


async def _summary(app, sessionmaker):
    """An agent looking at the confirmation summary of a Rp60.000 basket for Siti."""
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await fill_basket(agent, await shopping_code(kpm))
    summary = (await agent.press("Selesai"))[-1]
    assert "Total: Rp60.000" in summary.text
    return agent, kpm, summary


async def _money(sessionmaker, family_id: int) -> tuple[int, int, int]:
    """(balance, redemptions, redemption ledger entries) of a family."""
    async with sessionmaker() as session:
        balance = await session.scalar(
            select(BpntWallet.balance).where(BpntWallet.beneficiary_id == family_id)
        )
        sales = await session.scalar(
            select(func.count())
            .select_from(Redemption)
            .where(Redemption.beneficiary_id == family_id)
        )
        entries = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.beneficiary_id == family_id, LedgerEntry.kind == "redemption")
        )
    return int(balance or 0), int(sales or 0), int(entries or 0)


def _texts(messages) -> list[str]:
    return [m.text for m in messages]


@contextlib.contextmanager
def once_on(target: Any, name: str, action: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Run `action(*args)` (blocking: the bot waits) the first time SQLAlchemy fires
    event `name` on `target` inside the block."""
    fired = False

    def hook(*_: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            action(*args)

    event.listen(target, name, hook)
    try:
        yield
    finally:
        event.remove(target, name, hook)
    assert fired, f"no {name} happened"


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_app(settings, engine, sessionmaker, private_redis, tmp_path):
    """The bot with FSM, locks, dedup and throttle on a private Redis it may lose."""
    settings.redis_url = private_redis.url
    settings.throttle_burst = 10_000  # tests act faster than people
    async with polling_bot(settings) as app:
        yield await _ready_app(app, sessionmaker, tmp_path)


async def test_redis_outage_is_answered_busy_and_heals_by_itself(
    redis_app, sessionmaker, private_redis: RedisServer
) -> None:
    app = redis_app
    agent, kpm, _ = await _summary(app, sessionmaker)
    assert any("Struk #" in text for text in _texts(await agent.press("Konfirmasi")))
    english = await app.user("Ann", language_code="en")

    private_redis.stop()  # killed: every key (FSM state, locks, dedup) is gone
    assert _texts(await kpm.send("/start")) == [BUSY_ID]
    assert _texts(await english.send("/start")) == [BUSY_EN]
    assert _texts(await agent.press("Transaksi baru")) == [BUSY_ID]
    assert not app.polling.done()  # no crash, no restart loop: polling goes on

    private_redis.start()  # back, empty, on the same port: redis-py reconnects
    assert "Halo, Siti" in (await kpm.send("/start"))[-1].text
    assert "Hello, Ann" in (await english.send("/start"))[-1].text
    assert "kode belanja" in (await agent.press("Transaksi baru"))[-1].text
    # the sale confirmed before the outage stands, charged once
    assert await _money(sessionmaker, app.ids["siti"]) == (340_000, 1, 1)


async def test_redis_killed_during_a_confirmation_keeps_the_sale(
    redis_app, sessionmaker, private_redis: RedisServer
) -> None:
    """Redis dies right after the sale is committed: both receipts still go out, and a
    replayed Confirm after the restart is "already confirmed", not a second debit."""
    app = redis_app
    agent, kpm, summary = await _summary(app, sessionmaker)

    with once_on(AsyncSession.sync_session_class, "after_commit", private_redis.stop):
        replies = await agent.press("Konfirmasi")
    receipt = next(m for m in replies if m.message_id == summary.message_id)
    assert "Struk #" in receipt.text and "Sisa saldo: Rp340.000" in receipt.text
    assert not any(BUSY_ID in t or "Maaf" in t for t in _texts(replies))
    assert "Sisa saldo: Rp340.000" in (await kpm.last()).text  # the family's copy
    assert _texts(await agent.send("/start")) == [BUSY_ID]

    private_redis.start()
    await agent.callback(summary.message_id, summary.button("Konfirmasi")["callback_data"])
    assert (await agent.callback_answers())[-1]["text"] == "Transaksi ini sudah dikonfirmasi."
    assert await _money(sessionmaker, app.ids["siti"]) == (340_000, 1, 1)


async def test_redis_that_hangs_fails_the_update_in_seconds(
    redis_app, private_redis: RedisServer
) -> None:
    app = redis_app
    kpm = await app.user("Siti")
    await kpm.send("/start")
    private_redis.freeze()  # SIGSTOP: connections stay open, nothing answers
    try:
        started = time.monotonic()
        assert _texts(await kpm.send("/bantuan")) == [BUSY_ID]
        assert time.monotonic() - started < 10  # socket timeouts, not a hang
    finally:
        private_redis.thaw()
    # A command sent while it hung may still run after SIGCONT (e.g. Siti's update
    # lock, which then expires by itself); other users are served at once.
    other = await app.user("Budi")
    assert "Halo, Budi" in (await other.send("/start"))[-1].text


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresCluster]:
    """One migrated cluster for this module's tests (each empties its tables first)."""
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        asyncio.run(migrate(cluster.url))
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
async def pg_app(private_postgres: PostgresCluster, tmp_path) -> AsyncIterator[Any]:
    """The bot on a private PostgreSQL cluster (FSM in memory: only the database fails)."""
    engine = create_engine(private_postgres.url)
    await _truncate(engine)
    sessionmaker = create_sessionmaker(engine)
    async with polling_bot(settings_for(private_postgres.url)) as app:
        app.sessionmaker = sessionmaker
        yield await _ready_app(app, sessionmaker, tmp_path)
    await engine.dispose()


async def test_postgres_restart_between_updates_is_invisible_and_an_outage_is_busy(
    pg_app, private_postgres: PostgresCluster
) -> None:
    app = pg_app
    kpm = await linked_kpm(app)
    status = (await kpm.press("Status bantuan"))[-1].text
    assert "Rp400.000" in status

    await asyncio.to_thread(private_postgres.restart, "immediate")  # a crash and recovery
    assert (await kpm.press("Status bantuan"))[-1].text == status  # pre-ping reconnected

    await asyncio.to_thread(private_postgres.stop, "fast")
    assert _texts(await kpm.send("/start")) == [BUSY_ID]
    assert not app.polling.done()
    await asyncio.to_thread(private_postgres.start)
    assert (await kpm.press("Status bantuan"))[-1].text == status


async def test_postgres_crash_at_commit_of_an_update_changes_nothing_and_says_so(
    pg_app, private_postgres: PostgresCluster
) -> None:
    app = pg_app
    user = await app.user("Siti")
    await user.send("/bahasa")
    # PostgreSQL crashes (and recovers) just before the bot's COMMIT reaches it
    with once_on(app.ctx.engine.sync_engine, "commit", private_postgres.restart, "immediate"):
        replies = await user.press("English")
    assert replies[-1].text == NOT_DONE_ID  # after "From now on I will write in English."
    assert "Halo, Siti" in (await user.send("/start"))[-1].text  # still Indonesian
    await user.send("/bahasa")
    assert "From now on I will write in English." in (await user.press("English"))[-1].text


async def test_postgres_crash_at_commit_of_a_sale_is_reported_and_charged_once(
    pg_app, private_postgres: PostgresCluster
) -> None:
    app = pg_app
    agent, kpm, summary = await _summary(app, app.sessionmaker)
    with once_on(app.ctx.engine.sync_engine, "commit", private_postgres.restart, "immediate"):
        replies = await agent.press("Konfirmasi")
    assert _texts(replies)[-1] == (
        "Transaksi tidak berhasil: tidak ada saldo yang terpotong. "
        "Tekan Konfirmasi untuk mencoba lagi."
    )
    assert await _money(app.sessionmaker, app.ids["siti"]) == (400_000, 0, 0)

    # the same summary, pressed again: confirmed now, exactly once
    await agent.callback(summary.message_id, summary.button("Konfirmasi")["callback_data"])
    receipt = next(m for m in await agent.messages() if m.message_id == summary.message_id)
    assert "Struk #" in receipt.text and "Sisa saldo: Rp340.000" in receipt.text
    assert "Sisa saldo: Rp340.000" in (await kpm.last()).text
    assert await _money(app.sessionmaker, app.ids["siti"]) == (340_000, 1, 1)


async def test_postgres_lost_commit_answer_still_gives_the_receipt(
    pg_app, private_postgres: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server committed, then the connection died before its answer arrived: the
    bot looks the sale up on a fresh connection and shows the receipt, not an error."""
    app = pg_app
    agent, kpm, summary = await _summary(app, app.sessionmaker)
    commit = AsyncSession.commit

    async def commit_then_crash(self: AsyncSession) -> None:
        monkeypatch.setattr(AsyncSession, "commit", commit)
        await commit(self)
        await asyncio.to_thread(private_postgres.restart, "immediate")
        raise ConnectionResetError("the connection died before COMMIT's answer arrived")

    monkeypatch.setattr(AsyncSession, "commit", commit_then_crash)
    replies = await agent.press("Konfirmasi")
    receipt = next(m for m in replies if m.message_id == summary.message_id)
    assert "Struk #" in receipt.text and "Sisa saldo: Rp340.000" in receipt.text
    assert not any("Maaf" in t or "tidak berhasil" in t for t in _texts(replies))
    assert "Sisa saldo: Rp340.000" in (await kpm.last()).text
    assert await _money(app.sessionmaker, app.ids["siti"]) == (340_000, 1, 1)


# --------------------------------------------------------------------------- Bot API


def _calls(events: list[dict[str, Any]], method: str) -> list[bool]:
    return [e["ok"] for e in events if e["method"] == method]


async def test_bot_api_5xx_and_429_are_retried_and_the_retries_are_bounded(bot_app) -> None:
    user = await bot_app.user("Siti")
    since = await bot_app.client.last_seq()
    await bot_app.client.faults(502, count=2, methods=["sendMessage"])
    assert "Halo, Siti" in (await user.send("/start"))[-1].text
    await bot_app.client.faults(429, count=1, retry_after=1, methods=["sendMessage"])
    assert "Halo, Siti" in (await user.send("/start"))[-1].text
    assert _calls(await user.events(since), "sendMessage") == [False, False, True, False, True]

    # Telegram failing longer than the retries: given up after 3, the user is told
    since = await bot_app.client.last_seq()
    await bot_app.client.faults(500, count=4, methods=["sendMessage"])
    assert _texts(await user.send("/start")) == [NOT_DONE_ID]
    assert _calls(await user.events(since), "sendMessage") == [False] * 4 + [True]


async def test_bot_api_timeout_is_retried(bot_app) -> None:
    user = await bot_app.user("Siti")
    bot_app.bot.session.timeout = 1  # seconds per request (polling keeps its own)
    await bot_app.client.faults(delay=2, count=1, methods=["sendMessage"])
    replies = await user.send("/start")
    assert any("Halo, Siti" in text for text in _texts(replies))
    assert not any("Maaf" in text for text in _texts(replies))


async def test_polling_resumes_after_get_updates_fails(bot_app) -> None:
    user = await bot_app.user("Siti")
    await bot_app.client.faults(502, seconds=2, methods=["getUpdates"])
    assert "Halo, Siti" in (await user.send("/start"))[-1].text  # after aiogram's backoff
    failed = [e for e in await bot_app.client.events() if e["method"] == "getUpdates"]
    assert failed and not any(e["ok"] for e in failed)  # (successful polls are not logged)


class WebhookProcess:
    """A webhook bot (context, bot, dispatcher, aiohttp server) on a fixed port."""

    def __init__(self, settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"

    async def start(self) -> None:
        self.ctx = await create_context(self.settings)
        self.bot = create_bot(self.settings)
        self.runner = web.AppRunner(
            build_webhook_app(self.ctx, self.bot, create_dispatcher(self.ctx))
        )
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.bot.session.close()
        await self.ctx.close()


async def test_webhook_delivery_resumes_after_the_bot_was_unreachable(
    settings, engine, clean_redis
) -> None:
    emulator = BotApiEmulator(token=BOT_TOKEN)
    settings.telegram_api_url = await emulator.start()
    settings.webhook_secret = "fault-test_webhook-secret-0123456789"
    process = WebhookProcess(settings, free_port())
    await process.start()
    client = EmulatorClient(settings.telegram_api_url, wait_timeout=20)
    try:
        await process.bot.set_webhook(process.url, secret_token=settings.webhook_secret)
        user = await client.user(5101, "Siti")
        assert "Halo, Siti" in (await user.send("/start"))[-1].text

        await process.stop()  # the bot's server is down; the emulator retries with backoff
        sent = await client.request("POST", f"/users/{user.id}/messages", json={"text": "/start"})
        await asyncio.sleep(1)
        assert await client.request("GET", "/bot")  # the emulator is fine meanwhile
        assert await user.changed_since(sent["seq"]) == []
        await process.start()  # back on the same port: the queued update arrives
        await client.wait(sent["update_id"])
        assert "Halo, Siti" in (await user.changed_since(sent["seq"]))[-1].text
        info = await process.bot.get_webhook_info()
        assert info.last_error_message and info.pending_update_count == 0

        # Bot API 5xx while answering a webhook update: retried the same way
        await client.faults(503, count=2, methods=["sendMessage"])
        assert "Halo, Siti" in (await user.send("/start"))[-1].text
    finally:
        await client.close()
        await process.stop()
        await emulator.stop()


# --------------------------------------------------------------------------- units


async def test_a_failure_after_the_handler_committed_says_saved_not_unchanged(
    settings, sessionmaker
) -> None:
    """Money first, messages after: once a handler committed, "nothing was changed" would
    be a lie, so a later failure says the request was saved."""
    sent: list[str] = []

    class RecordingBot:
        async def send_message(self, chat_id: int, text: str) -> None:
            sent.append(text)

    update = Update.model_validate(
        {
            "update_id": 1,
            "message": {
                "message_id": 1, "date": 0, "text": "/x", "chat": {"id": 7, "type": "private"},
                "from": {"id": 7, "is_bot": False, "first_name": "A"},
            },
        }
    )  # fmt: skip

    async def commits_then_fails(_event: Any, data: dict[str, Any]) -> None:
        await data["session"].commit()
        raise RuntimeError("a message failed after the commit")

    async def error_reply(event: Any, data: dict[str, Any]) -> None:
        await ErrorReplyMiddleware()(commits_then_fails, event, data)

    i18n = create_i18n(settings)
    with i18n.context(), i18n.use_locale("en"):
        data = {"bot": RecordingBot()}
        await DbSessionMiddleware(sessionmaker)(error_reply, update, data)
    assert sent == [
        "Your request was saved, but something went wrong afterwards. "
        "Please check the result before trying again."
    ]


async def test_retries_can_be_switched_off_for_callers_with_their_own_policy() -> None:
    calls: list[str] = []
    sleeps: list[float] = []

    async def failing(_bot: Any, method: Any) -> Any:
        calls.append(method.__api_method__)
        raise TelegramServerError(method=method, message="Bad Gateway")

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    middleware = RetryMiddleware(sleep=sleep)
    method = SendMessage(chat_id=1, text="x")
    with pytest.raises(TelegramServerError):
        await middleware(failing, None, method)
    assert len(calls) == 4 and len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]
    calls.clear()
    with retries_disabled(), pytest.raises(TelegramServerError):
        await middleware(failing, None, method)
    assert len(calls) == 1
