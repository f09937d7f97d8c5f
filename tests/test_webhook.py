"""Webhook mode: updates arrive over HTTP with the secret token; /healthz answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.factory import create_bot, create_context, create_dispatcher
from bot.runtime import WEBHOOK_PATH, build_webhook_app
from bot.sandbox.client import EmulatorClient
from bot.sandbox.emulator import BotApiEmulator
from tests.conftest import BOT_TOKEN

SECRET = "s3cret-Token_value"


@pytest.fixture
async def webhook(settings, engine, clean_redis) -> AsyncIterator[tuple[str, EmulatorClient]]:  # type: ignore[no-untyped-def]
    emulator = BotApiEmulator(token=BOT_TOKEN)
    api_url = await emulator.start()
    settings.telegram_api_url = api_url
    settings.webhook_secret = SECRET
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    runner = web.AppRunner(build_webhook_app(ctx, bot, dp))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    await bot.set_webhook(base + WEBHOOK_PATH, secret_token=SECRET)
    client = EmulatorClient(api_url)
    try:
        yield base, client
    finally:
        await client.close()
        await runner.cleanup()
        await bot.session.close()
        await ctx.close()
        await emulator.stop()


async def test_updates_arrive_through_the_webhook(webhook) -> None:  # type: ignore[no-untyped-def]
    _, client = webhook
    user = await client.user(5001, "Siti", language_code="id")
    replies = await user.send("/start")
    assert "Halo, Siti!" in replies[-1].text


@pytest.mark.parametrize("header", [None, "wrong-secret"])
async def test_webhook_refuses_requests_without_the_secret(webhook, header) -> None:  # type: ignore[no-untyped-def]
    base, client = webhook
    headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header else {}
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1, "date": 0, "text": "/start",
            "chat": {"id": 5002, "type": "private"},
            "from": {"id": 5002, "is_bot": False, "first_name": "X"},
        },
    }  # fmt: skip
    async with aiohttp.ClientSession() as http:
        async with http.post(base + WEBHOOK_PATH, json=update, headers=headers) as response:
            assert response.status == 401
    assert await client.events(chat_id=5002) == []


async def test_healthz_reports_database_reachable(webhook) -> None:  # type: ignore[no-untyped-def]
    base, _ = webhook
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as response:
            assert response.status == 200
            assert (await response.json()) == {"status": "ok"}
