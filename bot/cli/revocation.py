"""Commands that take access away (or give a switched-off place back): staff roles,
e-Warongs and partner organisations. Each is audited and tells the people affected."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from bot.cli import app, common
from bot.cli.admin import admin_app
from models.base import utcnow
from services import revocation
from services.revocation import Revoked

partner_app = typer.Typer(help="Partner organisations and their staff.", no_args_is_help=True)
ewarong_app = typer.Typer(help="e-Warong shops.", no_args_is_help=True)
app.add_typer(partner_app, name="partner")
app.add_typer(ewarong_app, name="ewarong")

TelegramId = Annotated[int, typer.Argument(help="The person's Telegram user id", min=1)]


def _run(change: Callable[[AsyncSession], Awaitable[Revoked]], done: str, missing: str) -> None:
    """Apply one change in a transaction and report it; exit 1 when there was nothing to
    change."""

    async def work(sessionmaker) -> Revoked:
        async with sessionmaker() as session, session.begin():
            return await change(session)

    result = asyncio.run(common.with_database(work))
    console = common.console()
    if result is Revoked.DONE:
        console.print(f"[green]{done}[/green] (audited; the people affected are told).")
    elif result is Revoked.UNCHANGED:
        console.print("Nothing changed: it already was so.")
    else:
        console.print(f"[red]{missing}[/red]")
        raise typer.Exit(code=1)


@admin_app.command("remove")
def admin_remove(
    telegram_id: TelegramId,
    scope: Annotated[
        str | None, typer.Option("--scope", help="The region code of a regional admin role")
    ] = None,
) -> None:
    """Take an admin role away (national, or regional with --scope)."""
    where = f"of region {scope}" if scope else "national"
    _run(
        lambda session: revocation.remove_admin(session, telegram_id, scope, utcnow(), actor=None),
        f"{telegram_id} is no longer an admin ({where})",
        f"{telegram_id} is not an admin ({where}).",
    )


@partner_app.command("remove-staff")
def partner_remove_staff(
    telegram_id: TelegramId,
    org_code: Annotated[str, typer.Argument(help="The partner organisation's code")],
) -> None:
    """Take a staff member away from a partner organisation."""
    _run(
        lambda session: revocation.remove_staff(
            session, telegram_id, org_code, utcnow(), actor=None
        ),
        f"{telegram_id} is no longer staff of {org_code}",
        f"{telegram_id} is not staff of partner organisation {org_code}.",
    )


def _partner_switch(org_code: str, active: bool) -> None:
    _run(
        lambda session: revocation.set_partner_active(
            session, org_code, active, utcnow(), actor=None
        ),
        f"Partner organisation {org_code} is {'active' if active else 'deactivated'}",
        f"No partner organisation has the code {org_code}.",
    )


@partner_app.command("deactivate")
def partner_deactivate(
    org_code: Annotated[str, typer.Argument(help="The partner organisation's code")],
) -> None:
    """Stop routing new help requests to a partner organisation (requests waiting for its
    answer move on to the next partner)."""
    _partner_switch(org_code, False)


@partner_app.command("activate")
def partner_activate(
    org_code: Annotated[str, typer.Argument(help="The partner organisation's code")],
) -> None:
    """Route help requests to a deactivated partner organisation again."""
    _partner_switch(org_code, True)


def _ewarong_switch(code: str, active: bool) -> None:
    _run(
        lambda session: revocation.set_ewarong_active(session, code, active, utcnow(), actor=None),
        f"e-Warong {code} is {'active' if active else 'deactivated'}",
        f"No e-Warong has the code {code}.",
    )


@ewarong_app.command("deactivate")
def ewarong_deactivate(code: Annotated[str, typer.Argument(help="The e-Warong's code")]) -> None:
    """Stop all transactions at an e-Warong at once (also the ones being typed now)."""
    _ewarong_switch(code, False)


@ewarong_app.command("activate")
def ewarong_activate(code: Annotated[str, typer.Argument(help="The e-Warong's code")]) -> None:
    """Allow transactions at a deactivated e-Warong again."""
    _ewarong_switch(code, True)
