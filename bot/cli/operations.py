"""Commands for running the network: import e-Warongs, invite agents and partners."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from bot.cli.common import print_report, progress_bar
from bot.cli.data import FileArgument, import_app
from infra.settings import Settings, load_settings
from models.base import utcnow
from models.enums import Role
from services import revocation
from services.bpnt.ewarongs import get_ewarong, import_ewarongs
from services.imports.csvfile import ImportReport
from services.invites import (
    INVITE_TTL,
    InviteError,
    create_invite,
    deep_link,
)
from services.regions import timezone_for, zone_abbreviation
from services.revocation import Revoked

invite_app = typer.Typer(
    help="Invite e-Warong agents and partner organisations.", no_args_is_help=True
)
agent_app = typer.Typer(help="Manage e-Warong agents.", no_args_is_help=True)
app.add_typer(invite_app, name="invite")
app.add_typer(agent_app, name="agent")

GET_ME_TIMEOUT = 15  # seconds
JAKARTA_PROVINCE = "31"

BotUsernameOption = Annotated[
    str | None,
    typer.Option(
        "--bot-username",
        help="The bot's @username for the link (default: asked from Telegram with BOT_TOKEN)",
    ),
]


# --- import ewarongs ---------------------------------------------------------------


@import_app.command("ewarongs")
def import_ewarongs_command(file: FileArgument) -> None:
    """Import e-Warongs (code,name,village_code,address,latitude,longitude,bank)."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> ImportReport:
        with progress_bar(console, "e-Warongs") as progress:
            return await import_ewarongs(sessionmaker, file, progress=progress)

    print_report(console, asyncio.run(common.with_database(work)), "e-Warongs")


# --- invite ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedInvite:
    payload: str
    expires_at: datetime
    region_code: str | None  # for the time zone of the expiry


async def _create(role: str, scope: str) -> CreatedInvite:
    """Create the invite in DATABASE_URL; exits 1 with the reason on an operator error."""

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> CreatedInvite:
        now = utcnow()
        async with sessionmaker() as session, session.begin():
            try:
                payload = await create_invite(session, role, scope, created_by=None, now=now)
            except InviteError as error:
                common.console().print(f"[red]Cannot create the invite:[/red] {escape(str(error))}")
                raise typer.Exit(code=1) from error
            region = None
            if role == Role.AGENT:
                ewarong = await get_ewarong(session, scope.strip())
                region = ewarong.village_code if ewarong else None
        return CreatedInvite(payload, now + INVITE_TTL, region)

    return await common.with_database(work)


async def _ask_bot_username(settings: Settings) -> str | None:
    """The bot's username from Telegram's getMe (or TELEGRAM_API_URL's server)."""
    from bot.factory import create_bot  # aiogram is loaded only when it is needed

    bot = create_bot(settings)
    try:
        me = await bot.get_me(request_timeout=GET_ME_TIMEOUT)
        return me.username
    finally:
        await bot.session.close()


def _bot_username(console: Console, given: str | None) -> str | None:
    """--bot-username, else getMe with BOT_TOKEN, else None (with the reason printed)."""
    if given:
        return given.strip().removeprefix("@")
    settings = load_settings()
    if not settings.bot_token:
        console.print("BOT_TOKEN is not set, so the bot's username is unknown.")
        return None
    try:
        username = asyncio.run(_ask_bot_username(settings))
    except Exception as error:  # network, bad token, unreachable server: still show the payload
        console.print(
            f"[yellow]Could not ask Telegram for the bot's username:[/yellow] {escape(str(error))}"
        )
        return None
    if not username:
        console.print("Telegram did not return a username for this bot.")
    return username


def _expiry_text(expires_at: datetime, region_code: str | None) -> str:
    """`2025-05-03 14:00 WITA (2025-05-03 06:00 UTC)`: the e-Warong's zone, else WIB."""
    region = region_code or JAKARTA_PROVINCE
    local = expires_at.astimezone(timezone_for(region))
    in_utc = expires_at.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M} {zone_abbreviation(region)} ({in_utc:%Y-%m-%d %H:%M} UTC)"


def _issue(role: str, scope: str, bot_username: str | None, who: str) -> None:
    """Create an invite and print the link (or the payload) and its expiry."""
    console = common.console()
    created = asyncio.run(_create(role, scope))
    username = _bot_username(console, bot_username)
    hours = int(INVITE_TTL.total_seconds() // 3600)
    link = None
    if username:
        try:
            link = deep_link(username, created.payload)
        except ValueError:
            console.print(f"[yellow]{escape(repr(username))} is not a valid bot username.[/yellow]")
    if link:
        console.print(f"[green]Invite link for {who}[/green] (send it to that person only):")
        console.print(link, soft_wrap=True)
    else:
        console.print(f"[green]Invite payload for {who}:[/green]")
        console.print(created.payload, soft_wrap=True)
        console.print(
            "Form the link as https://t.me/<bot username>?start=<payload>, or run this "
            "command again with --bot-username."
        )
    console.print(
        f"Valid once, for {hours} hours: until "
        f"{_expiry_text(created.expires_at, created.region_code)}."
    )


@invite_app.command("agent")
def invite_agent(
    ewarong_code: Annotated[str, typer.Argument(help="The e-Warong's code (must be active)")],
    bot_username: BotUsernameOption = None,
) -> None:
    """Create a one-time link that makes its user an agent of an e-Warong."""
    _issue(Role.AGENT, ewarong_code, bot_username, f"an agent of e-Warong {ewarong_code}")


@invite_app.command("partner")
def invite_partner(
    org_code: Annotated[str, typer.Argument(help="The partner organisation's code")],
    bot_username: BotUsernameOption = None,
) -> None:
    """Create a one-time link that makes its user a partner organisation's staff."""
    _issue(Role.PARTNER, org_code, bot_username, f"partner organisation {org_code}")


# --- agent -------------------------------------------------------------------------


@agent_app.command("remove")
def agent_remove(
    telegram_id: Annotated[int, typer.Argument(help="The agent's Telegram user id")],
    ewarong_code: Annotated[str, typer.Argument(help="The e-Warong's code")],
) -> None:
    """Take the agent role for an e-Warong away from a Telegram account."""
    console = common.console()

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> bool:
        async with sessionmaker() as session, session.begin():
            result = await revocation.remove_agent(
                session, telegram_id, ewarong_code, utcnow(), actor=None
            )
            return result is Revoked.DONE

    if not asyncio.run(common.with_database(work)):
        console.print(f"[red]{telegram_id} is not an agent of e-Warong {ewarong_code}.[/red]")
        raise typer.Exit(code=1)
    console.print(f"[green]{telegram_id} is no longer an agent of e-Warong {ewarong_code}.[/green]")
