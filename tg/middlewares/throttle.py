"""Per-user throttling: past a burst of updates in a short window, updates are dropped.

It runs right after the private-chat and de-duplication guards, before the database
session and the account are loaded, so a flood of updates costs no SQL; the one notice
is written in the language Telegram reports for the user (the account is not read).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from infra.kv import KeyValueStore
from services.accounts import locale_for

log = logging.getLogger(__name__)


class ThrottleMiddleware(BaseMiddleware):
    def __init__(self, store: KeyValueStore, burst: int, window: float, i18n: I18n) -> None:
        self.store = store
        self.i18n = i18n
        self.burst = burst
        self.window = window

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None:
            return await handler(event, data)
        count = await self.store.incr(f"throttle:{user.id}", self.window)
        if count <= self.burst:
            return await handler(event, data)
        if count == self.burst + 1:  # say it once per window, then stay quiet
            log.info("throttled user %s", user.id)
            await self._tell(data["bot"], event, user)
        return UNHANDLED

    async def _tell(self, bot: Bot, event: TelegramObject, user: User) -> None:
        locale = locale_for(None, user.language_code, self.i18n.default_locale)
        with self.i18n.context(), self.i18n.use_locale(locale):
            text = _("You are sending messages too fast. Please wait a few seconds.")
        if isinstance(event, Update) and event.callback_query is not None:
            await event.callback_query.answer(text, show_alert=True)
        else:
            await bot.send_message(user.id, text)
