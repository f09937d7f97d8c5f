"""Commands that prepare data: db upgrade, import, demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from bot.cli.common import print_report, progress_bar
from infra.db import upgrade_database
from infra.settings import load_settings
from services.imports.beneficiaries import import_beneficiaries
from services.imports.csvfile import ImportReport
from services.imports.disbursements import import_disbursements
from services.regions import (
    REGION_DATA_DIR,
    RegionFileError,
    import_regions,
    region_count,
    zone_abbreviation,
)

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
if TYPE_CHECKING:
    from sandbox.demo import DemoIdentity

import_app = typer.Typer(help="Import registry data from CSV files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")

DEMO_SHOWN = 8


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the latest version."""
    upgrade_database(load_settings().database_url)
    common.console().print("[green]Database is up to date.[/green]")


async def _import_regions(
    sessionmaker: async_sessionmaker[AsyncSession], folder: Path, console: Console
) -> int:
    """Import the region files with a progress bar; exits 1 on a bad file."""
    try:
        with progress_bar(console, "Regions") as progress:
            return await import_regions(sessionmaker, folder, progress)
    except RegionFileError as error:
        console.print(f"[red]Region file problem:[/red] {error}")
        raise typer.Exit(code=1) from error


@import_app.command("regions")
def import_regions_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder with provinces/regencies/districts/villages.csv")
    ] = REGION_DATA_DIR,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing when regions are already loaded")
    ] = False,
) -> None:
    """Import Kemendagri regions (provinces, regencies, districts, villages)."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> int | None:
        if if_empty:
            async with sessionmaker() as session:
                if await region_count(session):
                    return None
        return await _import_regions(sessionmaker, folder, console)

    count = asyncio.run(common.with_database(work))
    if count is None:
        console.print("Regions are already loaded.")
    else:
        console.print(f"[green]Regions:[/green] {count} imported or refreshed.")


def _run_import(path: Path, what: str, importer: Callable[..., Awaitable[ImportReport]]) -> None:
    """Run one CSV importer with a progress bar and print its report."""
    console = common.console()
    hasher = common.hasher()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> ImportReport:
        with progress_bar(console, what) as progress:
            return await importer(sessionmaker, path, hasher, progress=progress)

    print_report(console, asyncio.run(common.with_database(work)), what)


FileArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="UTF-8 CSV file")
]


@import_app.command("beneficiaries")
def import_beneficiaries_command(file: FileArgument) -> None:
    """Import the beneficiary registry (nik,name,birth_date,phone,kks_number,...)."""
    _run_import(file, "Beneficiaries", import_beneficiaries)


@import_app.command("disbursements")
def import_disbursements_command(file: FileArgument) -> None:
    """Import PKH stages and BPNT months (nik,program,period,amount,status,date)."""
    _run_import(file, "Disbursements", import_disbursements)


def demo_table(identities: list[DemoIdentity]) -> Table:
    """A table of demo identities to try the bot with."""
    table = Table(title="Demo families to try (synthetic people)")
    table.add_column("NIK", no_wrap=True, min_width=16)
    table.add_column("name")
    table.add_column("birth date", no_wrap=True)
    table.add_column("phone", no_wrap=True)
    table.add_column("activation code", no_wrap=True)
    table.add_column("programs", no_wrap=True)
    table.add_column("village")
    for person in identities:
        table.add_row(
            person.nik,
            person.name,
            person.birth_date.strftime("%d-%m-%Y"),
            person.phone or "-",
            person.activation_code or "-",
            " + ".join(person.programs),
            f"{person.village_name} ({zone_abbreviation(person.village_code)})",
        )
    return table


@app.command("demo")
def demo_command(
    families: Annotated[int, typer.Option(min=1, help="How many families in all")] = 200,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same families)")] = 2024,
) -> None:
    """Fill the database with a synthetic registry and print identities to try."""
    from sandbox.demo import DemoError, generate_demo  # development tooling, not in the image

    console = common.console()
    hasher = common.hasher()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> list[DemoIdentity]:
        async with sessionmaker() as session:
            empty = await region_count(session) == 0
        if empty:
            console.print("No regions yet: importing the bundled Kemendagri list first.")
            await _import_regions(sessionmaker, REGION_DATA_DIR, console)
        with console.status("Generating demo families..."):
            return await generate_demo(sessionmaker, hasher, families=families, seed=seed)

    try:
        identities = asyncio.run(common.with_database(work))
    except DemoError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(code=1) from error
    console.print(demo_table(identities[:DEMO_SHOWN]))
    console.print(
        f"[green]{len(identities)} demo families are in the registry.[/green] "
        "Link an account with a NIK and birth date above."
    )
