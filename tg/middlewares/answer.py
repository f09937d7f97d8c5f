"""Every button press is answered once, by this middleware, after its handler.

Handlers never call `query.answer()`: they set `callback_answer.text` (and
`show_alert`) when there is something to say. A handler that fails is not answered
here: `ErrorReplyMiddleware` answers it with the failure's alert.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.dispatcher.flags import get_flag
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery
from aiogram.types import CallbackQuery, TelegramObject
from aiogram.utils.callback_answer import CallbackAnswer, CallbackAnswerMiddleware

log = logging.getLogger("bansos.errors")


class AnswerAfterHandler(CallbackAnswerMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, CallbackQuery):
            return await handler(event, data)
        callback_answer = self.construct_callback_answer(
            properties=get_flag(data, "callback_answer")
        )
        data["callback_answer"] = callback_answer
        if not callback_answer.disabled and callback_answer.answered:  # pre=True
            await self._answer(event, callback_answer)
        result = await handler(event, data)  # a failure propagates unanswered
        if not callback_answer.disabled and not callback_answer.answered:
            await self._answer(event, callback_answer)
        return result

    def answer(self, event: CallbackQuery, callback_answer: CallbackAnswer) -> AnswerCallbackQuery:
        # aiogram's own logs the query id, a 16-19 digit number a log scan cannot tell
        # from a NIK or a KKS number; nothing is logged here.
        return event.answer(
            text=callback_answer.text,
            show_alert=callback_answer.show_alert,
            url=callback_answer.url,
            cache_time=callback_answer.cache_time,
        )

    async def _answer(self, event: CallbackQuery, callback_answer: CallbackAnswer) -> None:
        try:
            await self.answer(event, callback_answer)
        except TelegramBadRequest as error:  # pressed long ago: Telegram no longer waits
            log.info("a button press could not be answered: %s", error.message)
