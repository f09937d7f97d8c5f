"""The admin's progress message, kept up to date by the worker (`make_reporter`); its text
is `tg.views.broadcasts.progress_text`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
)
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Broadcast
from services import accounts
from services.broadcasts import store as broadcasts
from services.broadcasts.engine import Report
from services.broadcasts.store import Progress
from tg import keyboards
from tg.views.broadcasts import final_report, progress_text

log = logging.getLogger("bansos.broadcast")


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
                    final_report(broadcast, progress, locale),
                )

    return report
