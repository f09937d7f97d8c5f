"""Commands for admins: `admin add`, `audit`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from services import accounts, audit
from services.regions import region_name

admin_app = typer.Typer(help="Admins of the bot.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")


@admin_app.command("add")
def admin_add(
    telegram_id: Annotated[int, typer.Argument(help="The admin's Telegram user id")],
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="Region code prefix (e.g. 32 or 32.04); national if absent"),
    ] = None,
) -> None:
    """Make a Telegram account a national admin, or a regional one with --scope."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> str | bool:
        async with sessionmaker() as session, session.begin():
            if scope is not None and await region_name(session, scope) is None:
                return "unknown"
            return await accounts.grant_admin(session, telegram_id, scope, actor=None)

    result = asyncio.run(common.with_database(work))
    if result == "unknown":
        console.print(f"[red]No region has the code {scope!r}.[/red]")
        raise typer.Exit(code=1)
    where = f"of region {scope}" if scope else "national"
    console.print(
        f"Telegram account {telegram_id} is now an admin ({where})."
        if result
        else f"Telegram account {telegram_id} already was an admin ({where})."
    )


@app.command("audit")
def audit_list(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many events")] = 50,
    action: Annotated[
        str | None, typer.Option(help="Only actions starting with this, e.g. redemption.")
    ] = None,
) -> None:
    """The newest audit events (ids and codes only; never personal data)."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> Table:
        async with sessionmaker() as session:
            events = await audit.recent(session, limit=limit, action_prefix=action)
        table = Table("id", "time (UTC)", "action", "actor", "subject", "details")
        for event in events:
            table.add_row(
                str(event.id),
                event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                event.action,
                "" if event.actor_telegram_id is None else str(event.actor_telegram_id),
                f"{event.subject_type or ''} {event.subject_id or ''}".strip(),
                ", ".join(f"{k}={v}" for k, v in sorted(event.details.items())),
            )
        return table

    console.print(asyncio.run(common.with_database(work)))
