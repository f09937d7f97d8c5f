"""`bansos-bot admin add` and `bansos-bot audit`."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from infra.db import create_engine, create_sessionmaker
from models import AccountRole
from tests.conftest import _truncate

runner = CliRunner()


async def _roles(url: str) -> list[tuple[int, str, str | None]]:
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session:
        rows = await session.scalars(select(AccountRole).order_by(AccountRole.id))
        roles = [(r.telegram_id, r.role, r.scope) for r in rows]
    await engine.dispose()
    return roles


async def _empty(url: str) -> None:
    engine = create_engine(url)
    await _truncate(engine)
    await engine.dispose()


def test_admin_add_national_and_regional_then_audit(database_url, monkeypatch) -> None:
    asyncio.run(_empty(database_url))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("COLUMNS", "200")
    assert runner.invoke(app, ["admin", "add", "111"]).exit_code == 0
    result = runner.invoke(app, ["admin", "add", "222", "--scope", "32.04"])
    assert result.exit_code == 0 and "region 32.04" in result.output
    again = runner.invoke(app, ["admin", "add", "222", "--scope", "32.04"])
    assert "already was an admin" in again.output
    unknown = runner.invoke(app, ["admin", "add", "333", "--scope", "99.99"])
    assert unknown.exit_code == 1 and "No region" in unknown.output
    assert asyncio.run(_roles(database_url)) == [(111, "admin", None), (222, "admin", "32.04")]
    listed = runner.invoke(app, ["audit", "--action", "admin."])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("admin.granted") == 2 and "scope=32.04" in listed.output
