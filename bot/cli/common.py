"""What the CLI commands share: a console, a database for DATABASE_URL, the hasher,
progress bars and import reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker
from infra.settings import load_settings
from models import Base
from services.identity import Hasher
from services.imports.csvfile import ImportReport

MAX_ERRORS_SHOWN = 50
UPGRADE_HINT = "The database has no tables yet: run `bansos-bot db upgrade` first."

T = TypeVar("T")
Work = Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]


def console() -> Console:
    """A console on the current stdout (created per command, so tests can capture it)."""
    return Console(highlight=False)


async def _tables_exist(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
    """Whether the migrated schema is there (every model table exists)."""
    async with sessionmaker() as session:
        connection = await session.connection()
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return set(Base.metadata.tables) <= names


async def with_database(work: Work[T]) -> T:
    """Run `work` with a session factory for DATABASE_URL; exit with a hint if unmigrated."""
    engine = create_engine(load_settings().database_url)
    try:
        sessionmaker = create_sessionmaker(engine)
        if not await _tables_exist(sessionmaker):
            console().print(f"[red]{UPGRADE_HINT}[/red]")
            raise typer.Exit(code=1)
        return await work(sessionmaker)
    finally:
        await engine.dispose()


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich progress bar; yields the `progress(done, total)` callback for services."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def hasher() -> Hasher:
    """The NIK/phone/KKS hasher keyed by SECRET_KEY."""
    return Hasher(load_settings().resolved_secret_key())


def print_report(console: Console, report: ImportReport, what: str) -> None:
    """Counts on success, or a table of the first errors and exit code 1."""
    if report.ok:
        console.print(
            f"[green]{what}:[/green] {report.inserted} inserted, {report.updated} updated, "
            f"{report.unchanged} unchanged."
        )
        return
    table = Table(title=f"{what}: nothing imported, {report.error_count} problem(s)")
    table.add_column("line", justify="right")
    table.add_column("column")
    table.add_column("reason")
    shown = report.errors[:MAX_ERRORS_SHOWN]
    for error in shown:
        table.add_row(str(error.line), error.column or "", error.reason)
    console.print(table)
    if report.error_count > len(shown):
        console.print(f"... and {report.error_count - len(shown)} more.")
    raise typer.Exit(code=1)
