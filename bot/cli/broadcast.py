"""`bansos-bot broadcast status ID`: the admin's progress message, in the terminal."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Annotated

import typer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import app, common
from infra.settings import load_settings

broadcast_app = typer.Typer(help="Broadcasts to KPM, agents and partners.", no_args_is_help=True)
app.add_typer(broadcast_app, name="broadcast")

TAG_RE = re.compile(r"<[^>]+>")


@broadcast_app.command("status")
def broadcast_status(
    broadcast_id: Annotated[int, typer.Argument(help="The broadcast's number (#N)")],
    lang: Annotated[str, typer.Option(help="Language of the report: id or en")] = "",
) -> None:
    """Status, counts, rate and time left of a broadcast, and why deliveries failed."""
    from bot.factory import create_i18n
    from models import Broadcast, BroadcastFailure
    from services.broadcasts import store as broadcasts
    from tg.context import utc_now
    from tg.views.broadcasts import progress_text

    settings = load_settings()
    locale = lang or settings.default_locale
    i18n = create_i18n(settings)

    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> str | None:
        async with sessionmaker() as session:
            broadcast = await session.get(Broadcast, broadcast_id)
            progress = await broadcasts.progress(session, broadcast_id)
            if broadcast is None or progress is None:
                return None
            failures = (
                await session.execute(
                    select(BroadcastFailure.error, func.count())
                    .where(BroadcastFailure.broadcast_id == broadcast_id)
                    .group_by(BroadcastFailure.error)
                    .order_by(func.count().desc())
                    .limit(10)
                )
            ).all()
        with i18n.context(), i18n.use_locale(locale):
            text = progress_text(broadcast, progress, locale, broadcast.region_prefix or None,
                                 utc_now())  # fmt: skip
        lines = [html.unescape(TAG_RE.sub("", text))]
        lines += [f"  {count} × {html.unescape(error)}" for error, count in failures]
        return "\n".join(lines)

    result = asyncio.run(common.with_database(work))
    if result is None:
        common.console().print(f"[red]There is no broadcast #{broadcast_id}.[/red]")
        raise typer.Exit(code=1)
    typer.echo(result)
