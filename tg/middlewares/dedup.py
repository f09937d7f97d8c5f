"""Handle an update id once, even if Telegram (or a retrying webhook) delivers it twice."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update

from infra.kv import KeyValueStore

log = logging.getLogger(__name__)
SEEN_SECONDS = 24 * 3600


class UpdateDedupMiddleware(BaseMiddleware):
    def __init__(self, store: KeyValueStore) -> None:
        self.store = store

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        key = f"update:{data['bot'].id}:{event.update_id}"
        if not await self.store.set_if_absent(key, SEEN_SECONDS):
            log.info("update %s already handled; skipped", event.update_id)
            return UNHANDLED
        try:
            return await handler(event, data)
        except BaseException:
            await self.store.delete(key)  # let a redelivery try again
            raise
