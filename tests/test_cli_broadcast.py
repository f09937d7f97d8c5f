"""`bansos-bot broadcast status ID` shows what the admin's progress message shows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from typer.testing import CliRunner

from bot.cli import app
from infra.db import create_engine, create_sessionmaker
from models import Broadcast, BroadcastChunk, BroadcastFailure
from tests.conftest import _truncate
from tg.context import utc_now

runner = CliRunner()


async def _broadcast(url: str) -> int:
    engine = create_engine(url)
    await _truncate(engine)
    now = utc_now()
    async with create_sessionmaker(engine)() as session, session.begin():
        broadcast = Broadcast(
            created_by=1, audience="bpnt", region_prefix="32.04", source_chat_id=1, message_id=1,
            status="running", scheduled_at=now - timedelta(seconds=100),
            started_at=now - timedelta(seconds=100), recipients=5000,
        )  # fmt: skip
        session.add(broadcast)
        await session.flush()
        session.add_all(
            [
                BroadcastChunk(broadcast_id=broadcast.id, first_after=0, last=10, cursor=10,
                               done=True, sent=1500, failed=2, blocked=498),
                BroadcastChunk(broadcast_id=broadcast.id, first_after=10, last=None, cursor=10),
                BroadcastFailure(broadcast_id=broadcast.id, telegram_id=7,
                                 error="Bad Request: chat not found"),
                BroadcastFailure(broadcast_id=broadcast.id, telegram_id=8,
                                 error="Bad Request: chat not found"),
            ]
        )  # fmt: skip
    await engine.dispose()
    return broadcast.id


def test_broadcast_status_prints_counts_rate_time_left_and_failures(
    database_url, monkeypatch
) -> None:
    broadcast_id = asyncio.run(_broadcast(database_url))
    monkeypatch.setenv("DATABASE_URL", database_url)
    result = runner.invoke(app, ["broadcast", "status", str(broadcast_id), "--lang", "en"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Broadcast #{broadcast_id} to BPNT/Sembako families: sending" in out
    assert "Recipients: 5,000 · 32.04" in out
    assert "Sent: 1,500 · failed: 2 · blocked the bot: 498" in out
    # 2,000 handled in ~100 s: ~20 per second, 3,000 left: ~2:30, said as people say it
    assert "Rate: 20 per second · time left: 3 minutes" in out  # 2.5 rounds up
    assert "0:0" not in out
    assert "2 × Bad Request: chat not found" in out
    missing = runner.invoke(app, ["broadcast", "status", "999999"])
    assert missing.exit_code == 1 and "no broadcast #999999" in missing.output
