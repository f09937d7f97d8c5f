"""The emulator's memory of one bot: users, private chats, files, commands, listeners.

:class:`World` is the state that the Bot API methods, the simulated users and the
control API share: who the users are, every message of every private chat, the
stored files, callback queries waiting for an answer, the command menus, the global
change sequence (``seq``) and the in-process listeners told about each change.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from typing import Any

from sandbox.emulator.records import (
    CallbackRecord,
    ChatRecord,
    FileRecord,
    StoredMessage,
    UserRecord,
)
from sandbox.emulator.validation import Formatted

FILE_ID_PREFIX = {
    "document": "BQACAgUAAxkBAAI",
    "photo": "AgACAgUAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
    "voice": "AwACAgUAAxkBAAI",
    "video": "BAACAgUAAxkBAAI",
}
PHOTO_SIZES = ((90, 68), (320, 240), (800, 600))


class World:
    """Everything the emulator remembers, except updates, the webhook and call logs."""

    def __init__(self, bot_id: int, bot_username: str, bot_first_name: str) -> None:
        self.bot_id = bot_id
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.listeners: list[tuple[asyncio.Queue[dict[str, Any]], int | None]] = []
        self.reset()

    def reset(self) -> None:
        """Forget users, chats, files, callback queries, commands and the sequence."""
        self.users: dict[int, UserRecord] = {}
        self.chats: dict[int, ChatRecord] = {}
        self.files: dict[str, FileRecord] = {}
        self.file_paths: dict[str, FileRecord] = {}
        self.callbacks: dict[str, CallbackRecord] = {}
        self.commands: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq = 0

    def next_seq(self) -> int:
        """Return the next value of the global change/event sequence."""
        self.seq += 1
        return self.seq

    def bot_user(self) -> dict[str, Any]:
        """Return the bot's ``User`` object as it appears in messages."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    # ----------------------------------------------------------------- messages

    def api_message(self, msg: StoredMessage) -> dict[str, Any]:
        """Return the Bot API ``Message`` object for a stored message."""
        user = self.chats[msg.chat_id].user
        message: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self.bot_user() if msg.from_bot else user.api_user(),
            "chat": user.api_chat(),
            "date": msg.date,
        }
        if msg.edit_date is not None:
            message["edit_date"] = msg.edit_date
        message.update(copy.deepcopy(msg.content))
        if msg.markup and "inline_keyboard" in msg.markup:
            message["reply_markup"] = copy.deepcopy(msg.markup)
        return message

    def store_message(
        self,
        chat: ChatRecord,
        kind: str,
        content: dict[str, Any],
        *,
        from_bot: bool,
        formatted: Formatted | None = None,
        markup: dict[str, Any] | None = None,
    ) -> StoredMessage:
        """Append a new message to a chat."""
        msg = StoredMessage(
            chat_id=chat.user.id,
            message_id=chat.new_message_id(),
            from_bot=from_bot,
            date=int(time.time()),
            kind=kind,
            content=content,
            seq=self.next_seq(),
            html=formatted.html if formatted else None,
            parse_mode=formatted.parse_mode if formatted else None,
            markup=markup,
        )
        chat.messages[msg.message_id] = msg
        return msg

    def message_view(self, msg: StoredMessage) -> dict[str, Any]:
        """Return the control-API view of a message."""
        content = msg.content
        document = content.get("document")
        return {
            "message_id": msg.message_id,
            "from_bot": msg.from_bot,
            "kind": msg.kind,
            "text": content.get("text", content.get("caption", "")),
            "html": msg.html,
            "parse_mode": msg.parse_mode,
            "entities": content.get("entities", content.get("caption_entities", [])),
            "caption": content.get("caption"),
            "reply_markup": msg.markup,
            "document": {
                "file_name": document.get("file_name"),
                "mime_type": document.get("mime_type"),
                "file_id": document["file_id"],
                "size": document.get("file_size"),
            }
            if document
            else None,
            "location": content.get("location"),
            "venue": content.get("venue"),
            "contact": content.get("contact"),
            "photo": content.get("photo"),
            "sticker": content.get("sticker"),
            "edited": msg.edit_date is not None,
            "deleted": msg.deleted,
            "reactions": list(msg.reactions),
            "date": msg.date,
            "seq": msg.seq,
        }

    # ----------------------------------------------------------------- files

    def store_file(
        self, kind: str, data: bytes, file_name: str | None = None, mime_type: str | None = None
    ) -> FileRecord:
        """Store bytes under a fresh Telegram-looking file_id and file_path."""
        prefix = FILE_ID_PREFIX.get(kind, FILE_ID_PREFIX["document"])
        number = len(self.files) + 1
        suffix = ""
        if file_name and "." in file_name:
            suffix = "." + file_name.rsplit(".", 1)[1]
        elif kind == "photo":
            suffix = ".jpg"
        record = FileRecord(
            file_id=prefix + secrets.token_urlsafe(30),
            file_unique_id="AgAD" + secrets.token_urlsafe(9),
            data=data,
            file_path=f"{kind}s/file_{number}{suffix}",
            file_name=file_name,
            mime_type=mime_type,
        )
        self.files[record.file_id] = record
        self.file_paths[record.file_path] = record
        return record

    def photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Store a photo in the usual three sizes and return the PhotoSize array."""
        sizes = []
        for width, height in PHOTO_SIZES:
            record = self.store_file("photo", data, mime_type="image/jpeg")
            sizes.append(
                {
                    "file_id": record.file_id,
                    "file_unique_id": record.file_unique_id,
                    "file_size": len(data),
                    "width": width,
                    "height": height,
                }
            )
        return sizes

    # ----------------------------------------------------------------- listeners

    def subscribe(self, chat_id: int | None = None) -> asyncio.Queue[dict[str, Any]]:
        """Return a queue fed with the events of one chat (None: of every chat)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.listeners.append((queue, chat_id))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding a queue returned by :meth:`subscribe`."""
        self.listeners = [entry for entry in self.listeners if entry[0] is not queue]

    def publish(self, event: dict[str, Any], chat_id: int | None = None) -> None:
        """Hand an event to the listeners of ``chat_id`` (None: to every listener)."""
        event = {**event, "seq": self.seq}
        for queue, wanted in self.listeners:
            if chat_id is None or wanted is None or wanted == chat_id:
                queue.put_nowait(event)

    def publish_message(self, chat: ChatRecord, msg: StoredMessage) -> None:
        """Tell listeners a message of ``chat`` appeared or changed."""
        if self.listeners:
            event = {
                "type": "message",
                "chat_id": chat.user.id,
                "message": self.message_view(msg),
                "reply_keyboard": chat.reply_keyboard,
            }
            self.publish(event, chat.user.id)
