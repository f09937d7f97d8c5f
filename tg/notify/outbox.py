"""Delivering outbox notices (`services.outbox`) with the Bot API, in each
recipient's language. The worker calls `deliver_outbox` on every tick."""

from __future__ import annotations

import logging
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services import accounts, outbox
from tg.views import kpm as views

log = logging.getLogger(__name__)
BATCH = 50


async def deliver_outbox(
    bot: Bot, i18n: I18n, sessionmaker: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """Send what is waiting (in batches until none is left); returns how many were sent.

    A blocked bot or an unknown chat ends a notice for good (the reason is kept); other
    failures are tried again at the next tick, at most `outbox.MAX_ATTEMPTS` times.
    """
    sent = 0
    retry_later = False
    while True:
        async with sessionmaker() as session, session.begin():
            batch = await outbox.take_pending(session, BATCH)
            for notice in batch:
                locale = await accounts.locale_of(session, notice.telegram_id)
                with i18n.context(), i18n.use_locale(locale):
                    text = views.notice_text(notice.kind, notice.params, locale)
                try:
                    await bot.send_message(notice.telegram_id, text)
                except (TelegramForbiddenError, TelegramBadRequest) as error:
                    await outbox.mark_failed(session, notice, now, type(error).__name__, final=True)
                except Exception as error:  # network, 5xx: next tick
                    log.warning("notice %s not delivered: %s", notice.id, type(error).__name__)
                    await outbox.mark_failed(
                        session, notice, now, type(error).__name__, final=False
                    )
                    retry_later = True
                else:
                    await outbox.mark_sent(session, notice, now)
                    sent += 1
        if len(batch) < BATCH or retry_later:
            return sent
