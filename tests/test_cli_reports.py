"""`bansos-bot export redemptions` writes the same CSV agents get, reconciled to the ledger."""

from __future__ import annotations

import asyncio
import csv
import io

from typer.testing import CliRunner

from bot.cli import app
from infra.db import create_engine, create_sessionmaker
from services.bpnt import redemptions
from services.bpnt.redemptions import BasketLine, RedemptionDraft
from services.identity import Hasher
from tests.conftest import TEST_SECRET, _truncate
from tests.support.clock import NOW
from tests.support.shopping import WARUNG, shopping_world


async def _two_redemptions(url: str, folder) -> None:
    engine = create_engine(url)
    await _truncate(engine)
    sessionmaker = create_sessionmaker(engine)
    ids = await shopping_world(sessionmaker, Hasher(TEST_SECRET.encode()), folder)
    for key, total, item in (("a", 45_000, "=cmd|' /C calc'!A0"), ("b", 30_000, "telur")):
        async with sessionmaker() as session, session.begin():
            draft = RedemptionDraft(
                key=key, ewarong_code=WARUNG["code"], agent_telegram_id=1,
                beneficiary_id=ids["siti"], lines=(BasketLine(item, 1, total),),
            )  # fmt: skip
            await redemptions.confirm(session, draft, NOW)
    await engine.dispose()


def test_export_redemptions_cli(database_url, tmp_path, monkeypatch) -> None:
    asyncio.run(_two_redemptions(database_url, tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    out = tmp_path / "export.csv"
    result = CliRunner().invoke(
        app,
        ["export", "redemptions", "--ewarong", WARUNG["code"], "--date", "2026-05-20",
         "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["total"]) for r in rows] == [45_000, 30_000]
    assert rows[0]["items"].startswith("'=cmd")  # a formula is shown, never run
    assert all(r["ledger_entry_id"] for r in rows)
    other_day = CliRunner().invoke(
        app, ["export", "redemptions", "--ewarong", WARUNG["code"], "--date", "2026-05-21"]
    )
    assert other_day.exit_code == 0 and other_day.output.count("\n") == 1  # header only
    unknown = CliRunner().invoke(
        app, ["export", "redemptions", "--ewarong", "NOPE", "--date", "2026-05-20"]
    )
    assert unknown.exit_code == 1
