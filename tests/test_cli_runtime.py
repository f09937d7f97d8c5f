"""`bansos-bot run` without a token explains how to get one and exits non-zero."""

from __future__ import annotations

from typer.testing import CliRunner

from bot.cli import app


def test_run_without_token_explains_and_fails(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 2
    assert "@BotFather" in result.output and "BOT_TOKEN" in result.output
