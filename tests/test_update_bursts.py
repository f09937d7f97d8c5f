"""A burst of updates handled at once (as aiogram does by default, and as a webhook
process does under load) is served normally: nobody is told the service is busy."""

from __future__ import annotations

import asyncio

import pytest

from bot.factory import create_bot, create_context, create_dispatcher
from sandbox.client import EmulatorClient
from sandbox.emulator import BotApiEmulator
from tests.conftest import BOT_TOKEN

USERS = 250
SAME_USER = 6  # the first users also tap several times in a row


@pytest.mark.skipif(not __import__("os").environ.get("TEST_REDIS_URL"), reason="CI has Redis")
async def test_two_hundred_fifty_users_at_once_all_get_the_menu(
    settings, engine, clean_redis
) -> None:
    emulator = BotApiEmulator(token=BOT_TOKEN, rate_limits=False)
    settings.telegram_api_url = await emulator.start()
    client = EmulatorClient(settings.telegram_api_url)
    await client.bulk_users(
        [{"id": 900_000 + n, "first_name": "Siti", "language_code": "id"} for n in range(USERS)]
    )
    for n in range(USERS):  # queued before the bot polls: they arrive together
        await client.request("POST", f"/users/{900_000 + n}/messages", json={"text": "/start"})
    for n in range(20):
        for _ in range(SAME_USER - 1):
            await client.request("POST", f"/users/{900_000 + n}/messages", json={"text": "/start"})
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    polling = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        async with asyncio.timeout(60):
            while True:
                stats = await client.stats()
                if stats["calls"].get("sendMessage", {}).get("200", 0) >= USERS + 20 * 5:
                    break
                await asyncio.sleep(0.1)
        for n in range(USERS):
            texts = [
                m["text"] for m in (await client.chat(900_000 + n))["messages"] if m["from_bot"]
            ]
            assert len(texts) == (SAME_USER if n < 20 else 1), texts
            assert all(text.startswith("Halo") for text in texts), texts
    finally:
        await dp.stop_polling()
        await polling
        await bot.session.close()
        await ctx.close()
        await client.close()
        await emulator.stop()


async def test_local_locks_serialize_one_name_and_forget_it_afterwards() -> None:
    from tg.fsm import LocalLocks

    locks = LocalLocks()
    order: list[int] = []

    async def hold(n: int) -> None:
        async with locks.hold("user:1"):
            order.append(n)
            await asyncio.sleep(0.01)
            order.append(n)

    await asyncio.gather(*(hold(n) for n in range(5)))
    assert order == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # one at a time, first come first served
    assert len(locks) == 0  # nothing kept for users no longer active
