"""The last safety net: an unexpected error is logged (no personal data) and the user is told.

The handler's database work is rolled back; the update counts as handled so the
bot never crash-loops on one bad update.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.types import TelegramObject, Update
from aiogram.utils.i18n import gettext as _

log = logging.getLogger("bansos.errors")


class ErrorReplyMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except Exception as error:
            assert isinstance(event, Update)
            # Engines hide bound parameters, so the traceback carries no user data.
            log.exception(
                "update %s (%s) failed: %s",
                event.update_id,
                event.event_type,
                type(error).__name__,
            )
            session = data.get("session")
            if session is not None:
                await session.rollback()
            await self._apologise(data["bot"], event)
            return None

    async def _apologise(self, bot: Bot, event: Update) -> None:
        text = _("Sorry, something went wrong on our side. Nothing was changed; please try again.")
        try:
            if event.callback_query is not None:
                await event.callback_query.answer(text, show_alert=True)
            elif user := event.event.from_user if hasattr(event.event, "from_user") else None:
                await bot.send_message(user.id, text)
        except Exception as error:  # the apology itself failed (e.g. Telegram down)
            log.warning("could not tell the user about a failure: %s", type(error).__name__)
