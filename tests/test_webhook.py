"""Webhook mode: updates arrive over HTTP with the secret token; /healthz answers.

Requests without the right X-Telegram-Bot-Api-Secret-Token get 401 and never reach the
dispatcher; a webhook does not start without a strong secret (it is never generated: every
webhook process and the setWebhook call must agree on it) nor without SECRET_KEY.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.factory import create_bot, create_context, create_dispatcher
from bot.runtime import WEBHOOK_PATH, build_webhook_app, run_webhook
from infra.settings import ConfigurationError, Settings
from models import Account, AuditEvent
from sandbox.client import EmulatorClient
from sandbox.emulator import BotApiEmulator
from tests.conftest import BOT_TOKEN, TEST_SECRET

SECRET = "s3cret-Token_value-0123456789abcdefXYZ"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def webhook(settings, engine, clean_redis) -> AsyncIterator[tuple[str, EmulatorClient]]:
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
    port = site._server.sockets[0].getsockname()[1]
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


async def test_updates_arrive_through_the_webhook(webhook) -> None:
    _, client = webhook
    user = await client.user(5001, "Siti", language_code="id")
    replies = await user.send("/start")
    assert "Halo, Siti!" in replies[-1].text


def _update(user_id: int) -> dict:
    return {
        "update_id": user_id,
        "message": {
            "message_id": 1, "date": 0, "text": "/start",
            "chat": {"id": user_id, "type": "private"},
            "from": {"id": user_id, "is_bot": False, "first_name": "X", "language_code": "id"},
        },
    }  # fmt: skip


async def _nothing_happened(client: EmulatorClient, session, user_id: int) -> None:
    """No reply was sent, no account made and nothing audited for this user."""
    assert await client.events(chat_id=user_id) == []
    assert await session.get(Account, user_id) is None
    assert await session.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize(
    "header", [None, "", "wrong-secret", SECRET[:-1], SECRET + "x", SECRET.upper()]
)
async def test_webhook_refuses_requests_without_the_secret(webhook, session, header) -> None:
    base, client = webhook
    await client.user(5002, "X", language_code="id")  # a chat the bot could answer
    headers = {"X-Telegram-Bot-Api-Secret-Token": header} if header is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.post(base + WEBHOOK_PATH, json=_update(5002), headers=headers) as response:
            assert response.status == 401
    await _nothing_happened(client, session, 5002)
    # The same update with the right secret is handled: the refusal was the secret's doing.
    async with aiohttp.ClientSession() as http:
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with http.post(base + WEBHOOK_PATH, json=_update(5002), headers=headers) as response:
            assert response.status == 200
    assert await session.get(Account, 5002) is not None
    assert await client.events(chat_id=5002) != []


async def test_a_non_ascii_secret_header_is_a_plain_401(webhook, session) -> None:
    """aiogram's str comparison raises on non-ASCII (a 500 and a traceback); ours says 401."""
    base, client = webhook
    await client.user(5003, "X", language_code="id")
    host, port = base.removeprefix("http://").split(":")
    body = json.dumps(_update(5003)).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n".encode()
        + b"X-Telegram-Bot-Api-Secret-Token: s\xc3\xa9cret\r\n\r\n"
        + body
    )
    await writer.drain()
    status_line = (await reader.readline()).decode()
    writer.close()
    assert status_line.split()[1] == "401", status_line
    await _nothing_happened(client, session, 5003)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (None, "WEBHOOK_SECRET must be set"),
        ("   ", "WEBHOOK_SECRET must be set"),
        ("short-secret", "32 to 256"),
        ("x" * 40 + " spaces " + "x" * 10, "32 to 256"),
        ("é" * 40, "32 to 256"),
        ("x" * 257, "32 to 256"),
    ],
)
async def test_no_webhook_app_without_a_strong_secret(settings, engine, secret, problem) -> None:
    settings.webhook_secret = Settings(_env_file=None, webhook_secret=secret).webhook_secret
    ctx = await create_context(settings)
    bot = create_bot(settings)
    try:
        with pytest.raises(ConfigurationError, match=problem):
            build_webhook_app(ctx, bot, create_dispatcher(ctx))
    finally:
        await bot.session.close()
        await ctx.close()


WEBHOOK_URL = "https://bot.example/webhook"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WEBHOOK_SECRET": SECRET, "SECRET_KEY": TEST_SECRET}, "WEBHOOK_URL must be set"),
        ({"WEBHOOK_URL": WEBHOOK_URL, "SECRET_KEY": TEST_SECRET}, "WEBHOOK_SECRET must be set"),
        ({"WEBHOOK_URL": WEBHOOK_URL, "WEBHOOK_SECRET": "abc", "SECRET_KEY": TEST_SECRET},
         "WEBHOOK_SECRET must be 32 to 256"),
        # A webhook is a deployment: SECRET_KEY is required even on SQLite.
        ({"WEBHOOK_URL": WEBHOOK_URL, "WEBHOOK_SECRET": SECRET},
         "SECRET_KEY must be set to run a webhook"),
        ({"WEBHOOK_URL": WEBHOOK_URL, "WEBHOOK_SECRET": SECRET, "SECRET_KEY": " "},
         "SECRET_KEY must be set to run a webhook"),
    ],
)  # fmt: skip
async def test_run_webhook_refuses_to_start_without_its_secrets(tmp_path, env, problem) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    settings = Settings(_env_file=None, bot_token=BOT_TOKEN, database_url=database, **env)
    with pytest.raises(ConfigurationError, match=problem):
        await run_webhook(settings)
    assert list(tmp_path.iterdir()) == []  # refused before a database or a key file exists


def test_the_webhook_process_stops_with_a_message_not_a_traceback(tmp_path) -> None:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    env = {"BOT_TOKEN": BOT_TOKEN, "WEBHOOK_URL": WEBHOOK_URL, "WEBHOOK_SECRET": SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "bot", "webhook"],
        cwd=tmp_path,
        env={**keep, "PYTHONPATH": str(PROJECT_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "SECRET_KEY must be set to run a webhook" in result.stderr
    assert "secrets.token_urlsafe" in result.stderr  # how to make one
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
