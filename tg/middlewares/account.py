"""Load (or create) the sender's account and roles, and pick the locale for the update."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware

from services import accounts


class AccountMiddleware(BaseMiddleware):
    """Puts `account` (None for updates without a user) into the handler data."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        data["account"] = None
        if user is not None and not user.is_bot:
            data["account"] = await accounts.get_or_create(
                data["session"], user.id, user.language_code
            )
        return await handler(event, data)


class AccountI18nMiddleware(I18nMiddleware):
    """The user's chosen language, else Telegram's when supported, else the default."""

    def __init__(self, i18n: I18n) -> None:
        super().__init__(i18n)

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        locale = accounts.locale_for(
            data.get("account"), user.language_code if user else None, self.i18n.default_locale
        )
        data["locale"] = locale
        return locale
