"""The admin's side of broadcast delivery: the progress message (`progress_text`) and
its updates from the worker (`make_reporter`). Used by the worker and the handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Broadcast
from services import accounts
from services.broadcasts import store as broadcasts
from services.broadcasts.engine import Report
from services.broadcasts.store import Progress
from tg import keyboards, texts
from tg.formatting import local_datetime

log = logging.getLogger("bansos.broadcast")


def _number(value: float, locale: str) -> str:
    return format_decimal(value, format="#,##0", locale=locale)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def progress_text(
    broadcast: Broadcast, progress: Progress, locale: str, zone_region: str | None, now: datetime
) -> str:
    """The admin's progress message: status, counts, rate and time left (or the report)."""
    number = lambda value: _number(value, locale)  # noqa: E731
    lines = [
        _("<b>Broadcast #{id}</b> to {audience}: {status}").format(
            id=broadcast.id,
            audience=texts.AUDIENCE_NAMES[broadcast.audience],
            status=texts.BROADCAST_STATUS_NAMES[progress.status],
        )
    ]
    if progress.status == "scheduled":
        lines.append(
            _("Starts at {when}.").format(
                when=local_datetime(progress.scheduled_at, locale, zone_region)
            )
        )
    lines.append(
        _("Recipients: {count}").format(count=number(progress.recipients))
        + (f" · {broadcast.region_prefix}" if broadcast.region_prefix else "")
    )
    lines.append(
        _("Sent: {sent} · failed: {failed} · blocked the bot: {blocked}").format(
            sent=number(progress.sent),
            failed=number(progress.failed),
            blocked=number(progress.blocked),
        )
    )
    if progress.status in ("running", "paused"):
        left = progress.seconds_left(now)
        lines.append(
            _("Rate: {rate} per second · time left: {left}").format(
                rate=number(progress.rate(now)),
                left=_duration(left) if left is not None else "–",
            )
        )
    if progress.status in ("done", "cancelled") and progress.started_at is not None:
        end = progress.finished_at or now
        lines.append(
            _("Took {duration}.").format(
                duration=_duration((end - progress.started_at).total_seconds())
            )
        )
    return "\n".join(lines)


async def render(session: AsyncSession, broadcast_id: int) -> tuple[Broadcast, Progress] | None:
    progress = await broadcasts.progress(session, broadcast_id)
    broadcast = await session.get(Broadcast, broadcast_id)
    if progress is None or broadcast is None:
        return None
    return broadcast, progress


def make_reporter(
    bot: Bot,
    i18n: I18n,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Callable[[], datetime],
) -> Report:
    """Edit the admin's progress message in place; on the final report also send a new
    message so the admin is notified."""

    async def report(broadcast_id: int, final: bool) -> None:
        async with sessionmaker() as session:
            rendered = await render(session, broadcast_id)
            if rendered is None:
                return
            broadcast, progress = rendered
            if broadcast.progress_chat_id is None or broadcast.progress_message_id is None:
                return
            locale = await accounts.locale_of(session, broadcast.progress_chat_id)
            zone = broadcast.region_prefix or None
        with i18n.context(), i18n.use_locale(locale):
            text = progress_text(broadcast, progress, locale, zone, clock())
            markup = keyboards.broadcast_controls(broadcast.id, progress.status)
            try:
                await bot.edit_message_text(
                    text=text,
                    chat_id=broadcast.progress_chat_id,
                    message_id=broadcast.progress_message_id,
                    reply_markup=markup,
                )
            except TelegramBadRequest as error:
                if "not modified" not in error.message:
                    log.warning("progress edit failed for broadcast %s", broadcast_id)
            if final:
                await bot.send_message(
                    broadcast.progress_chat_id,
                    _("Broadcast #{id} finished: {sent} of {recipients} delivered.").format(
                        id=broadcast.id,
                        sent=_number(progress.sent, locale),
                        recipients=_number(progress.recipients, locale),
                    ),
                )

    return report
