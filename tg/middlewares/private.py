"""Only private chats with people: the bot never answers in groups or channels, where a
shopping code or a status would be read by everyone, and ignores other bots."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import Chat, TelegramObject, User

log = logging.getLogger(__name__)


class PrivateChatsOnlyMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        chat: Chat | None = data.get("event_chat")
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot or (chat is not None and chat.type != "private"):
            log.info("update from a %s chat ignored", chat.type if chat else "bot")
            return UNHANDLED
        return await handler(event, data)
