"""The CLI run against the bot's own database, as an operator runs it beside the bot."""

from __future__ import annotations

import asyncio
import re

from typer.testing import CliRunner, Result

from bot.cli import app as cli_app
from infra.settings import Settings

ACTIVATION_RE = re.compile(r"\b[2-9A-HJKMNP-Z]{5}-[2-9A-HJKMNP-Z]{5}\b")


async def cli(settings: Settings, *args: str) -> Result:
    """`bansos-bot ARGS` on the test database (in a thread: commands run their own loop)."""
    env = {
        "DATABASE_URL": settings.database_url,
        "SECRET_KEY": settings.secret_key or "",
        "COLUMNS": "200",
        "REDIS_URL": "",
        "BOT_TOKEN": "",
        "TELEGRAM_API_URL": "",
    }
    return await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)


def activation_codes_in(output: str) -> list[str]:
    return ACTIVATION_RE.findall(output)
