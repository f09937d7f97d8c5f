"""Napza commands: import partners, purge, worker."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app
from bot.cli.data import (
    FileArgument,
    _console,
    _with_database,
    import_app,
    print_report,
    progress_bar,
)
from infra.settings import Settings, load_settings
from models.base import utcnow
from services.imports.csvfile import ImportReport
from services.napza import retention
from services.napza.partners import import_partners


@import_app.command("partners")
def import_partners_command(file: FileArgument) -> None:
    """Import partner organisations (code,name,kind,region_codes,phone,services)."""
    console = _console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> ImportReport:
        with progress_bar(console, "Partners") as progress:
            return await import_partners(sessionmaker, file, progress=progress)

    print_report(console, asyncio.run(_with_database(work)), "Partners")


@app.command("purge")
def purge_command() -> None:
    """Apply NAPZA_RETENTION_DAYS: close open requests idle that long ("no activity"), then
    drop the note and relayed chat of requests with no activity for that long."""
    settings = load_settings()
    retention_period = timedelta(days=settings.napza_retention_days)

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        async with sessionmaker() as session, session.begin():
            return await retention.purge(session, utcnow(), retention_period)

    count = asyncio.run(_with_database(work))
    _console().print(
        f"[green]Purged {count} Napza request(s)[/green] "
        f"(no activity for {settings.napza_retention_days} days)."
    )


async def _run_worker(settings: Settings) -> None:
    from bot.worker import run_worker_process

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                pass
    await run_worker_process(settings, stop)


@app.command("worker")
def worker_command() -> None:
    """Run the background worker: broadcast delivery, Napza SLA escalation and purge."""
    from bot.runtime import NO_TOKEN_HELP, configure_logging

    settings = load_settings()
    if not settings.bot_token:
        typer.echo(NO_TOKEN_HELP, err=True)
        raise typer.Exit(code=2)
    configure_logging()
    asyncio.run(_run_worker(settings))
