"""Reports from the command line: `export redemptions`."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from services.bpnt import reports
from services.bpnt.ewarongs import get_ewarong

export_app = typer.Typer(help="Export records as CSV.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("redemptions")
def export_redemptions(
    ewarong: Annotated[str, typer.Option("--ewarong", help="e-Warong code")],
    day: Annotated[str, typer.Option("--date", help="Day in the e-Warong's time zone, YYYY-MM-DD")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout)")
    ] = None,
) -> None:
    """One e-Warong's redemptions of one day, the same CSV agents get in chat."""
    console = common.console()
    try:
        wanted = date.fromisoformat(day)
    except ValueError:
        console.print("[red]--date must be YYYY-MM-DD[/red]")
        raise typer.Exit(code=2) from None

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> bytes | None:
        async with sessionmaker() as session:
            found = await get_ewarong(session, ewarong)
            if found is None:
                return None
            report = await reports.day_report(session, found, wanted)
            return await reports.export_csv(session, report)

    content = asyncio.run(common.with_database(work))
    if content is None:
        console.print(f"[red]No e-Warong with code {ewarong!r}.[/red]")
        raise typer.Exit(code=1)
    if output is None:
        sys.stdout.write(content.decode("utf-8"))
    else:
        output.write_bytes(content)
        console.print(f"Wrote {output}")
