"""Prometheus /metrics: the webhook serves it beside /healthz, the worker on METRICS_PORT.
Labels carry update types and outcomes only, never people."""

from __future__ import annotations

import re
from datetime import timedelta

import aiohttp
from aiohttp import web

from bot.factory import create_bot, create_context, create_dispatcher
from bot.runtime import WEBHOOK_PATH, build_webhook_app
from infra import metrics
from models import HelpRequest
from sandbox.client import EmulatorClient
from sandbox.emulator import BotApiEmulator
from services.broadcasts.store import Outcome
from tests.conftest import BOT_TOKEN

SECRET = "metrics-Test_secret-0123456789abcdefXYZ"


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


async def _scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_webhook_process_metrics_count_updates_latency_and_open_referrals(
    settings, engine, sessionmaker, clean_redis
) -> None:
    emulator = BotApiEmulator(token=BOT_TOKEN)
    settings.telegram_api_url = await emulator.start()
    settings.webhook_secret = SECRET
    ctx = await create_context(settings)
    bot = create_bot(settings)
    runner = web.AppRunner(build_webhook_app(ctx, bot, create_dispatcher(ctx)))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    # what `bansos-bot webhook` starts on METRICS_PORT beside the webhook
    metrics_runner = await metrics.serve(0, sessionmaker, host="127.0.0.1")
    scrape_url = f"http://127.0.0.1:{metrics_runner.addresses[0][1]}/metrics"
    client = EmulatorClient(settings.telegram_api_url)
    try:
        async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as response:
            assert response.status == 404  # not on the public webhook port
        await bot.set_webhook(base + WEBHOOK_PATH, secret_token=SECRET)
        before = await _scrape(scrape_url)
        messages = _value(before, 'bansos_updates_total{type="message"}') if (
            'type="message"' in before
        ) else 0.0  # fmt: skip
        handled = _value(before, "bansos_handler_seconds_count")
        async with sessionmaker() as session, session.begin():
            session.add(
                HelpRequest(
                    ticket="NPZ-METRIC", requester_telegram_id=1, for_whom="self",
                    age_group="18_25", help_type="konseling", region_code="32.04",
                    consent_at=ctx.now(), status="routing",
                    sla_due_at=ctx.now() + timedelta(hours=1),
                )
            )  # fmt: skip
        user = await client.user(5101, "Siti", language_code="id")
        await user.send("/start")
        await user.send("/bantuan")
        after = await _scrape(scrape_url)
        assert _value(after, 'bansos_updates_total{type="message"}') == messages + 2
        assert _value(after, "bansos_handler_seconds_count") == handled + 2
        assert _value(after, "bansos_open_referrals") == 1
        assert "bansos_update_errors_total" in after
        assert 'bansos_broadcast_messages_total{outcome="blocked"}' in after
        assert "bansos_redemptions_total" in after
        assert "5101" not in after and "Siti" not in after
    finally:
        await client.close()
        await metrics_runner.cleanup()
        await runner.cleanup()
        await bot.session.close()
        await ctx.close()
        await emulator.stop()


async def test_worker_metrics_server_reports_broadcast_outcomes(sessionmaker) -> None:
    runner = await metrics.serve(0, sessionmaker, host="127.0.0.1")
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/metrics"
        before = await _scrape(url)
        sent = _value(before, 'bansos_broadcast_messages_total{outcome="sent"}')
        metrics.observe_broadcast(Outcome.SENT)
        metrics.observe_broadcast(Outcome.SENT)
        after = await _scrape(url)
        assert _value(after, 'bansos_broadcast_messages_total{outcome="sent"}') == sent + 2
        assert _value(after, "bansos_open_referrals") == 0
    finally:
        await runner.cleanup()
