"""The fast tier: the production dispatcher fed updates in process (`dp.feed_update`),
its Bot API calls recorded instead of sent (as aiogram's own tests do).

For a test that checks one reply to one update. Every call the bot makes is held
against Telegram's published method list and required fields (`botapi_spec`), so a
request Telegram would refuse fails here too. Conversation tests that need what
Telegram does between calls (message ids, edits, button presses on sent messages,
rate limits) use the HTTP emulator (`bot_app` in conftest).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import Default, DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import Chat, Message, Update, User

from tests.support.botapi_spec import problems


@dataclass
class Call:
    method: str
    params: dict[str, Any]


@dataclass
class RecordingSession(BaseSession):
    """A Bot API session that records each call and answers as Telegram would, without a
    network: messages get increasing ids, everything else succeeds."""

    calls: list[Call] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ASYNC109
    ) -> Any:
        name = method.__api_method__
        params = {}
        for key, value in method:  # as the real session sends them: defaults resolved
            if isinstance(value, Default):
                value = bot.default[value.name]
            if value is not None:
                params[key] = value
        self.refused += problems(name, params)
        self.calls.append(Call(name, params))
        returning = method.__returning__
        if returning is bool:
            return True
        if name.startswith(("send", "edit", "copy")) and "chat_id" in params:
            return self._message(bot, params)
        if name.startswith("edit"):
            return True
        if name == "getMe":
            return User(id=bot.id, is_bot=True, first_name="Bansos", username="bansos_bot")
        raise NotImplementedError(f"the recording session cannot answer {name} yet")

    def _message(self, bot: Bot, params: dict[str, Any]) -> Message:
        return Message(
            message_id=params.get("message_id") or next(self._ids),
            date=datetime.now(UTC),
            chat=Chat(id=params["chat_id"], type="private"),
            from_user=User(id=bot.id, is_bot=True, first_name="Bansos"),
            text=params.get("text"),
        )

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("downloads go through the HTTP emulator tier")
        yield b""  # pragma: no cover

    async def close(self) -> None:
        return None


class InProcess:
    """The production dispatcher (every middleware and router) fed one update at a time."""

    def __init__(self, dp: Dispatcher, bot: Bot, session: RecordingSession) -> None:
        self.dp = dp
        self.bot = bot
        self.session = session
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)

    async def feed(self, update: dict[str, Any]) -> None:
        await self.dp.feed_update(
            self.bot, Update.model_validate(update, context={"bot": self.bot})
        )

    def _user(self, user_id: int, language_code: str) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": "Siti",
            "language_code": language_code,
        }

    async def send(self, user_id: int, language_code: str = "id", **message: Any) -> list[str]:
        """The user sends a message (`text=...`, `photo=[...]`...); returns the texts the bot
        sent to that chat in answer."""
        before = len(self.session.calls)
        await self.feed(
            {
                "update_id": next(self._update_ids),
                "message": {
                    "message_id": next(self._message_ids),
                    "date": int(datetime.now(UTC).timestamp()),
                    "chat": {"id": user_id, "type": "private"},
                    "from": self._user(user_id, language_code),
                    **message,
                },
            }
        )
        return [
            str(call.params["text"])
            for call in self.session.calls[before:]
            if "text" in call.params and call.params.get("chat_id") == user_id
        ]

    async def press(self, user_id: int, data: str, language_code: str = "id") -> list[Call]:
        """The user presses an inline button with callback `data` on a message the bot
        sent earlier; returns the calls the bot made in answer."""
        before = len(self.session.calls)
        await self.feed(
            {
                "update_id": next(self._update_ids),
                "callback_query": {
                    "id": str(next(self._update_ids)),
                    "from": self._user(user_id, language_code),
                    "chat_instance": "1",
                    "data": data,
                    "message": {
                        "message_id": 1,
                        "date": int(datetime.now(UTC).timestamp()),
                        "chat": {"id": user_id, "type": "private"},
                        "from": {"id": self.bot.id, "is_bot": True, "first_name": "Bansos"},
                        "text": "…",
                    },
                },
            }
        )
        return self.session.calls[before:]


def recording_bot(token: str) -> tuple[Bot, RecordingSession]:
    session = RecordingSession()
    bot = Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    return bot, session
