"""Napza commands: import partners, purge."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from bot.cli.common import print_report, progress_bar
from bot.cli.data import FileArgument, import_app
from infra.settings import load_settings
from models.base import utcnow
from services.imports.csvfile import ImportReport
from services.napza import retention
from services.napza.partners import import_partners


@import_app.command("partners")
def import_partners_command(file: FileArgument) -> None:
    """Import partner organisations (code,name,kind,region_codes,phone,services)."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> ImportReport:
        with progress_bar(console, "Partners") as progress:
            return await import_partners(sessionmaker, file, progress=progress)

    print_report(console, asyncio.run(common.with_database(work)), "Partners")


@app.command("purge")
def purge_command() -> None:
    """Apply NAPZA_RETENTION_DAYS: close open requests idle that long ("no activity"), then
    drop the note and relayed chat of requests with no activity for that long."""
    settings = load_settings()
    retention_period = timedelta(days=settings.napza_retention_days)

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        async with sessionmaker() as session, session.begin():
            return await retention.purge(session, utcnow(), retention_period)

    count = asyncio.run(common.with_database(work))
    common.console().print(
        f"[green]Purged {count} Napza request(s)[/green] "
        f"(no activity for {settings.napza_retention_days} days)."
    )
