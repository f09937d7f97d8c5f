"""Commands for the families' Telegram links: activation codes and unlinking."""

from __future__ import annotations

import asyncio
import csv
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from infra.settings import load_settings
from models.base import utcnow
from services.identity import mask_nik
from services.regions import timezone_for, zone_abbreviation
from services.registry import activation, linking
from services.registry.activation import IssuedActivation, IssueResult
from services.registry.linking import UnlinkResult

activation_app = typer.Typer(
    help="One-time activation codes, for families without a phone in the registry.",
    no_args_is_help=True,
)
account_app = typer.Typer(help="Telegram accounts linked to families.", no_args_is_help=True)
app.add_typer(activation_app, name="activation")
app.add_typer(account_app, name="account")

PROBLEMS = {
    IssueResult.INVALID: "not a 16-digit NIK",
    IssueResult.NOT_FOUND: "no family with this NIK in the registry",
    IssueResult.LINKED: "already linked to a Telegram account: run `bansos-bot account "
    "unlink NIK --reason ...` first",
}
LIST_COLUMNS = ("no", "nik", "name", "village_code", "activation_code", "valid_until")


def _niks_of(path: Path) -> list[tuple[int, str]]:
    """(line, NIK) from a CSV with a `nik` column, or from one NIK per line."""
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if lines and "nik" in [cell.strip().lower() for cell in next(csv.reader(lines[:1]))]:
        rows = csv.DictReader(lines)
        return [
            (number, (row.get("nik") or "").strip())
            for number, row in enumerate(rows, start=2)
            if any((value or "").strip() for value in row.values())
        ]
    return [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]


def _until(issued: IssuedActivation) -> str:
    assert issued.expires_at is not None
    local = issued.expires_at.astimezone(timezone_for(issued.village_code))
    return f"{local:%d-%m-%Y} {zone_abbreviation(issued.village_code)}"


def _write_list(path: Path, issued: list[IssuedActivation]) -> None:
    """The printable list as CSV, readable by its owner only (it holds live codes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(LIST_COLUMNS)
        for number, item in enumerate(issued, 1):
            assert item.code is not None
            writer.writerow(
                (number, mask_nik(item.nik_last4), item.masked_name, item.village_code,
                 activation.shown(item.code), _until(item))
            )  # fmt: skip


@activation_app.command("issue")
def activation_issue(
    nik: Annotated[str | None, typer.Argument(help="The family's 16-digit NIK")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Many families: a CSV with a nik column, or one NIK a line"),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Also write the list as CSV, for printing")
    ] = None,
) -> None:
    """Issue one-time activation codes (single use, ACTIVATION_CODE_DAYS days) for families
    to link their Telegram account without a phone in the registry. All or nothing: if
    any NIK is refused, no code is issued."""
    console = common.console()
    if (nik is None) == (file is None):
        console.print("[red]Give either one NIK or --file FILE.[/red]")
        raise typer.Exit(code=2)
    niks = [(1, nik)] if nik is not None else _niks_of(file)
    if not niks:
        console.print("[red]The file holds no NIK.[/red]")
        raise typer.Exit(code=1)
    ttl = timedelta(days=load_settings().activation_code_days)
    hasher = common.hasher()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> list:
        now = utcnow()
        async with sessionmaker() as session, session.begin():
            results = await activation.issue_many(session, hasher, niks, now, ttl)
            if any(item.result is not IssueResult.ISSUED for _, item in results):
                await session.rollback()
            return results

    results = asyncio.run(common.with_database(work))
    refused = [(line, item) for line, item in results if item.result is not IssueResult.ISSUED]
    if refused:
        table = Table(title=f"No code issued: {len(refused)} NIK(s) refused")
        table.add_column("line", justify="right")
        table.add_column("reason")
        for line, item in refused:
            table.add_row(str(line), PROBLEMS[item.result])
        console.print(table)
        raise typer.Exit(code=1)
    issued = [item for _, item in results]
    table = Table(title=f"Activation codes ({len(issued)}): hand each to its family only")
    for column in ("no", "NIK", "name", "village", "code", "valid until"):
        table.add_column(column)
    for number, item in enumerate(issued, 1):
        assert item.code is not None
        table.add_row(
            str(number), mask_nik(item.nik_last4), escape(item.masked_name), item.village_code,
            activation.shown(item.code), _until(item),
        )  # fmt: skip
    console.print(table)
    if output is not None:
        _write_list(output, issued)
        console.print(f"Written to {escape(str(output))} (readable by you only).")
    console.print(
        "The family opens the bot, presses Hubungkan akun KPM, then Saya punya kode aktivasi, "
        "and types the NIK and the code. A new code for the same family cancels the old one."
    )


@account_app.command("unlink")
def account_unlink(
    nik: Annotated[str, typer.Argument(help="The family's 16-digit NIK")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept in the audit log), e.g. 'HP hilang'")
    ],
    issue_code: Annotated[
        bool, typer.Option("--issue-code", help="Also issue an activation code to link again")
    ] = False,
) -> None:
    """Unlink a family from its Telegram account (a changed phone, a takeover). The old
    account is told; the family can link again (with --issue-code: an activation code)."""
    console = common.console()
    hasher = common.hasher()
    ttl = timedelta(days=load_settings().activation_code_days)

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> tuple[linking.UnlinkOutcome, IssuedActivation | None]:
        now: datetime = utcnow()
        async with sessionmaker() as session, session.begin():
            outcome = await linking.unlink(session, hasher, nik, reason, now)
            issued = None
            if outcome.result is UnlinkResult.UNLINKED and issue_code:
                issued = await activation.issue(session, hasher, nik, now, ttl)
            return outcome, issued

    outcome, issued = asyncio.run(common.with_database(work))
    if outcome.result is UnlinkResult.NO_REASON:
        console.print("[red]--reason must say why (it is kept in the audit log).[/red]")
        raise typer.Exit(code=2)
    if outcome.result is UnlinkResult.NOT_FOUND:
        console.print("[red]No family with this NIK in the registry.[/red]")
        raise typer.Exit(code=1)
    assert outcome.beneficiary is not None
    who = f"{mask_nik(outcome.beneficiary.nik_last4)}"
    if outcome.result is UnlinkResult.NOT_LINKED:
        console.print(f"[red]Family {who} is not linked to any Telegram account.[/red]")
        raise typer.Exit(code=1)
    console.print(
        f"[green]Family {who} is unlinked[/green] from Telegram account {outcome.telegram_id};"
        " that account will be told. Its shopping codes are cancelled."
    )
    if issued is not None and issued.code is not None:
        console.print(
            f"Activation code to link again: [bold]{activation.shown(issued.code)}[/bold]"
            f" (valid until {_until(issued)}, single use)."
        )
