"""The records the emulator keeps: users, chats, messages, files, updates, calls.

Plain dataclasses for the private chats (:class:`UserRecord`, :class:`ChatRecord`,
:class:`StoredMessage`, :class:`FileRecord`, :class:`CallbackRecord`), the update
queue and webhook (:class:`QueuedUpdate`, :class:`Webhook`), one Bot API call in
flight (:class:`Call`) and the counters over all calls (:class:`CallStats`);
:class:`ChangeSignal` wakes whoever waits for a change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.emulator.protocol import Params


@dataclass
class UserRecord:
    """A simulated Telegram user, owner of the private chat with the same id."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    phone_number: str | None = None
    blocked: bool = False

    def api_user(self) -> dict[str, Any]:
        """Return the Bot API ``User`` object."""
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for name in ("last_name", "username", "language_code"):
            if getattr(self, name):
                user[name] = getattr(self, name)
        return user

    def api_chat(self) -> dict[str, Any]:
        """Return the Bot API ``Chat`` object of the private chat."""
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        for name in ("last_name", "username"):
            if getattr(self, name):
                chat[name] = getattr(self, name)
        return chat


@dataclass
class FileRecord:
    """A stored file (uploaded by the bot or sent by a simulated user)."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    file_name: str | None = None
    mime_type: str | None = None

    def api_file(self) -> dict[str, Any]:
        """Return the Bot API ``File`` object (getFile result)."""
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }

    def api_document(self) -> dict[str, Any]:
        """Return the Bot API ``Document`` object."""
        document: dict[str, Any] = {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
        }
        if self.file_name:
            document["file_name"] = self.file_name
        if self.mime_type:
            document["mime_type"] = self.mime_type
        return document


@dataclass
class StoredMessage:
    """A message in a private chat, from the bot or from the user."""

    chat_id: int
    message_id: int
    from_bot: bool
    date: int
    kind: str
    content: dict[str, Any]
    seq: int
    html: str | None = None
    parse_mode: str | None = None
    markup: dict[str, Any] | None = None
    edit_date: int | None = None
    deleted: bool = False
    reactions: list[str] = field(default_factory=list)  # the bot's (setMessageReaction)


@dataclass
class ChatRecord:
    """A private chat between the bot and one user."""

    user: UserRecord
    chat_instance: str
    messages: dict[int, StoredMessage] = field(default_factory=dict)
    last_message_id: int = 0
    reply_keyboard: dict[str, Any] | None = None
    callback_answers: list[dict[str, Any]] = field(default_factory=list)

    def new_message_id(self) -> int:
        """Return the next message id of this chat."""
        self.last_message_id += 1
        return self.last_message_id


@dataclass
class CallbackRecord:
    """A callback query handed to the bot, waiting for answerCallbackQuery."""

    id: str
    chat_id: int
    message_id: int
    data: str | None
    created: float
    answered: bool = False


@dataclass(eq=False)
class QueuedUpdate:
    """An update waiting to be confirmed by getUpdates or a webhook delivery."""

    update: dict[str, Any]
    replay: bool = False
    delivered: bool = False

    @property
    def update_id(self) -> int:
        """Return the update's id."""
        return self.update["update_id"]


@dataclass(eq=False)
class Webhook:
    """The webhook registered with setWebhook and its delivery state."""

    url: str
    secret_token: str | None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class Call:
    """One Bot API call in flight: its parameters and what the event log records."""

    method: str
    params: Params
    chat_id: int | None = None
    message_id: int | None = None


class ChangeSignal:
    """Wakes every waiter on each state change; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone currently waiting."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], bool], seconds: float | None) -> bool:
        """Wait until ``predicate()`` holds or ``seconds`` pass (None: forever); return it."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        while not predicate():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return predicate()
        return True


# --------------------------------------------------------------------------- call statistics


class CallStats:
    """Counts of Bot API calls by method and outcome, with the first and last success
    time per method and successful sends per chat (for rate and exactly-once checks)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: dict[str, dict[str, int]] = {}
        self.first_ok: dict[str, float] = {}
        self.last_ok: dict[str, float] = {}
        self.per_chat: dict[int, int] = {}

    def record(self, method: str, status: int, chat_id: int | None, sending: bool) -> None:
        by_status = self.calls.setdefault(method, {})
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if status == 200:
            now = time.monotonic()
            self.first_ok.setdefault(method, now)
            self.last_ok[method] = now
            if sending and chat_id is not None:
                self.per_chat[chat_id] = self.per_chat.get(chat_id, 0) + 1

    def view(self, per_chat: bool) -> dict[str, Any]:
        span = {method: self.last_ok[method] - self.first_ok[method] for method in self.first_ok}
        data: dict[str, Any] = {"calls": self.calls, "ok_span_seconds": span}
        if per_chat:
            data["per_chat"] = {str(chat): count for chat, count in self.per_chat.items()}
        return data
