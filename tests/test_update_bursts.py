"""A burst of updates handled at once (as aiogram does by default, and as a webhook
process does under load) is served normally: nobody is told the service is busy."""

from __future__ import annotations

import asyncio

import pytest

from bot.factory import create_bot, create_context, create_dispatcher
from bot.sandbox.client import EmulatorClient
from bot.sandbox.emulator import BotApiEmulator
from tests.conftest import BOT_TOKEN

USERS = 250


@pytest.mark.skipif(not __import__("os").environ.get("TEST_REDIS_URL"), reason="CI has Redis")
async def test_two_hundred_fifty_users_at_once_all_get_the_menu(
    settings, engine, clean_redis
) -> None:  # type: ignore[no-untyped-def]
    emulator = BotApiEmulator(token=BOT_TOKEN, rate_limits=False)
    settings.telegram_api_url = await emulator.start()
    client = EmulatorClient(settings.telegram_api_url)
    await client.bulk_users(
        [{"id": 900_000 + n, "first_name": "Siti", "language_code": "id"} for n in range(USERS)]
    )
    for n in range(USERS):  # queued before the bot polls: they arrive together
        await client.request("POST", f"/users/{900_000 + n}/messages", json={"text": "/start"})
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        async with asyncio.timeout(60):
            while True:
                stats = await client.stats()
                if stats["calls"].get("sendMessage", {}).get("200", 0) >= USERS:
                    break
                await asyncio.sleep(0.1)
        for n in range(USERS):
            texts = [
                m["text"] for m in (await client.chat(900_000 + n))["messages"] if m["from_bot"]
            ]
            assert len(texts) == 1 and texts[0].startswith("Halo"), texts
    finally:
        await dp.stop_polling()
        await polling
        await bot.session.close()
        await ctx.close()
        await client.close()
        await emulator.stop()
