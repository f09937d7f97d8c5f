"""Shared pieces of the attack tests: the CLI run against the bot's own database, and
an admin made the way operators make one."""

from __future__ import annotations

import asyncio
import re

from typer.testing import CliRunner, Result

from bot.cli import app as cli_app
from infra.settings import Settings
from services import accounts

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


async def make_admin(app, sessionmaker, name: str = "Admin", scope: str | None = None):  # type: ignore[no-untyped-def]
    admin = await app.user(name)
    async with sessionmaker() as session, session.begin():
        await accounts.grant_admin(session, admin.id, scope, actor=None)
    return admin
