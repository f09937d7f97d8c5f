"""Simulated Telegram users: who they are and what they send the bot.

:class:`UserSimulator` creates users (each with a private chat), builds the
messages they send (text, contacts, locations, venues, stickers, photos,
documents, voice notes, videos), their edits and their inline-button presses,
stores them in the :class:`~sandbox.emulator.state.World` and queues the matching
updates. Bad input is a :class:`~sandbox.emulator.protocol.ControlError`.
"""

from __future__ import annotations

import base64
import mimetypes
import secrets
import time
from collections.abc import Callable
from typing import Any

from sandbox.emulator.protocol import ControlError, maybe_int
from sandbox.emulator.records import CallbackRecord, ChatRecord, StoredMessage, UserRecord
from sandbox.emulator.state import World
from sandbox.emulator.updates import UpdateQueue
from sandbox.emulator.validation import command_entities
from sandbox.html import ParseError, parse_html

ContentBuilder = Callable[[UserRecord, Any], tuple[str, dict[str, Any]]]


class UserSimulator:
    """Acts as the users: each action stores the message and queues the update."""

    def __init__(self, world: World, updates: UpdateQueue) -> None:
        self.world = world
        self.updates = updates
        self.builders: dict[str, ContentBuilder] = {
            "text": self._user_text,
            "contact": self._user_contact,
            "location": self._user_location,
            "venue": self._user_venue,
            "sticker": self._user_sticker,
            "photo": self._user_photo,
            "document": self._user_document,
            "voice": self._user_voice,
            "video": self._user_video,
        }

    # ----------------------------------------------------------------- users

    def upsert(self, spec: dict[str, Any]) -> UserRecord:
        """Create or update a user and their private chat."""
        user_id = maybe_int(spec.get("id"))
        if user_id is None or user_id <= 0 or not spec.get("first_name"):
            raise ControlError(400, "a user needs a positive integer id and a first_name")
        user = self.world.users.get(user_id)
        if user is None:
            user = self.world.users[user_id] = UserRecord(user_id, str(spec["first_name"]))
            self.world.chats[user_id] = ChatRecord(user, chat_instance=str(secrets.randbits(62)))
        for name in ("first_name", "last_name", "username", "language_code", "phone_number"):
            if name in spec:
                setattr(user, name, spec[name])
        if "blocked" in spec:
            user.blocked = bool(spec["blocked"])
        return user

    def _learn_users(self, update: dict[str, Any]) -> None:
        """Register unknown human senders found in a raw injected update."""
        for value in update.values():
            sender = value.get("from") if isinstance(value, dict) else None
            if isinstance(sender, dict) and not sender.get("is_bot"):
                if maybe_int(sender.get("id")) not in self.world.users and sender.get("first_name"):
                    self.upsert(sender)

    # ----------------------------------------------------------------- actions

    def send(
        self, user: UserRecord, chat: ChatRecord, body: dict[str, Any]
    ) -> tuple[int, StoredMessage]:
        """The user sends a message of the one kind ``body`` names; return update id, message."""
        kinds = [kind for kind in self.builders if kind in body]
        if len(kinds) != 1:
            raise ControlError(400, f"give exactly one of {', '.join(self.builders)}")
        kind, content = self.builders[kinds[0]](user, body[kinds[0]])
        msg = self.world.store_message(chat, kind, content, from_bot=False)
        self.world.publish_message(chat, msg)
        update_id = self.updates.enqueue({"message": self.world.api_message(msg)})
        return update_id, msg

    def edit(
        self, user: UserRecord, chat: ChatRecord, body: dict[str, Any]
    ) -> tuple[int, StoredMessage]:
        """The user edits one of their text messages; return update id and message."""
        msg = chat.messages.get(maybe_int(body.get("message_id")) or 0)
        if msg is None or msg.from_bot or msg.deleted or msg.kind != "text":
            raise ControlError(404, "no text message of this user with that message_id")
        _, msg.content = self._user_text(user, body.get("text"))
        msg.edit_date = int(time.time())
        msg.seq = self.world.next_seq()
        self.world.publish_message(chat, msg)
        update_id = self.updates.enqueue({"edited_message": self.world.api_message(msg)})
        return update_id, msg

    def press(
        self, user: UserRecord, chat: ChatRecord, body: dict[str, Any]
    ) -> tuple[int, CallbackRecord, int]:
        """The user presses (or forges) an inline button; return update id, query, seq."""
        msg = chat.messages.get(maybe_int(body.get("message_id")) or 0)
        if msg is None or not msg.from_bot or msg.deleted:
            raise ControlError(404, "no bot message with that message_id in this chat")
        data = body.get("data")
        if data is not None and not isinstance(data, str):
            raise ControlError(400, "data must be a string")
        query = CallbackRecord(
            id=str(secrets.randbits(62)),
            chat_id=user.id,
            message_id=msg.message_id,
            data=data,
            created=time.monotonic() - float(body.get("age") or 0),
        )
        self.world.callbacks[query.id] = query
        callback = {
            "id": query.id,
            "from": user.api_user(),
            "message": self.world.api_message(msg),
            "chat_instance": chat.chat_instance,
        }
        if data is not None:
            callback["data"] = data
        seq = self.world.next_seq()
        update_id = self.updates.enqueue({"callback_query": callback})
        return update_id, query, seq

    def inject(self, update: Any) -> tuple[int, int]:
        """Queue a raw update (a given update_id is used as-is); return update id and seq."""
        if not isinstance(update, dict):
            raise ControlError(400, 'give {"update": {...}}')
        update = dict(update)
        update_id = update.pop("update_id", None)
        if update_id is not None and maybe_int(update_id) is None:
            raise ControlError(400, "update_id must be an integer")
        self._learn_users(update)
        seq = self.world.next_seq()
        return self.updates.enqueue(update, maybe_int(update_id)), seq

    # ----------------------------------------------------------------- message content

    @staticmethod
    def _user_text(user: UserRecord, text: Any) -> tuple[str, dict[str, Any]]:
        """A text message, with bot_command entities; ``{"html": ...}`` gives formatted
        text (bold, links...) as entities, as a Telegram app sends it."""
        if isinstance(text, dict) and isinstance(text.get("html"), str):
            try:
                plain, formatted = parse_html(text["html"])
            except ParseError as exc:
                raise ControlError(400, f"can't parse the html: {exc}") from None
            if not plain.strip():
                raise ControlError(400, "text must be a non-empty string")
            return "text", {"text": plain, "entities": formatted} if formatted else {"text": plain}
        if not isinstance(text, str) or not text.strip():
            raise ControlError(400, "text must be a non-empty string")
        content: dict[str, Any] = {"text": text}
        entities = command_entities(text)
        if entities:
            content["entities"] = entities
        return "text", content

    @staticmethod
    def _user_contact(user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A shared contact; user_id is the sharer's own id when it is their own contact."""
        if not isinstance(spec, dict) or not spec.get("phone_number"):
            raise ControlError(400, "contact needs a phone_number")
        contact = {"phone_number": str(spec["phone_number"])}
        contact["first_name"] = spec.get("first_name") or user.first_name
        for name in ("last_name", "user_id", "vcard"):
            if spec.get(name) is not None:
                contact[name] = spec[name]
        return "contact", {"contact": contact}

    @staticmethod
    def _location_of(spec: Any) -> dict[str, Any]:
        """Return a Location from a control spec with latitude and longitude."""
        try:
            location = {"latitude": float(spec["latitude"]), "longitude": float(spec["longitude"])}
        except (TypeError, KeyError, ValueError):
            raise ControlError(400, "location needs numeric latitude and longitude") from None
        if spec.get("horizontal_accuracy") is not None:
            location["horizontal_accuracy"] = float(spec["horizontal_accuracy"])
        return location

    def _user_location(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A shared location."""
        return "location", {"location": self._location_of(spec)}

    def _user_venue(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A shared venue (carries both venue and location)."""
        location = self._location_of(spec)
        venue = {
            "location": location,
            "title": str(spec.get("title") or "Tempat"),
            "address": str(spec.get("address") or "Jalan"),
        }
        return "venue", {"venue": venue, "location": location}

    def _user_sticker(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A sticker (regular, static WEBP)."""
        spec = spec if isinstance(spec, dict) else {}
        record = self.world.store_file(
            "sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp"
        )
        sticker = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": spec.get("emoji", "👍"),
            "set_name": spec.get("set_name", "EmulatorStickers"),
            "file_size": len(record.data),
        }
        return "sticker", {"sticker": sticker}

    @staticmethod
    def _user_file_bytes(spec: dict[str, Any], placeholder: bytes) -> bytes:
        """Return the bytes a user's file holds: ``content``/``content_base64`` or a placeholder."""
        if spec.get("content_base64") is not None:
            return base64.b64decode(spec["content_base64"])
        if spec.get("content") is not None:
            return str(spec["content"]).encode("utf-8")
        return placeholder

    @staticmethod
    def _with_caption(content: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Add a user's caption to media content."""
        if spec.get("caption"):
            content["caption"] = str(spec["caption"])
        return content

    def _user_photo(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A photo in three sizes."""
        spec = spec if isinstance(spec, dict) else {}
        data = self._user_file_bytes(spec, b"\xff\xd8\xff\xe0 emulator photo \xff\xd9")
        return "photo", self._with_caption({"photo": self.world.photo_sizes(data)}, spec)

    def _user_document(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A document; its bytes can be given for bots that download it."""
        spec = spec if isinstance(spec, dict) else {}
        file_name = str(spec.get("file_name") or "document.pdf")
        mime = spec.get("mime_type") or mimetypes.guess_type(file_name)[0]
        data = self._user_file_bytes(spec, f"emulator placeholder for {file_name}\n".encode())
        record = self.world.store_file(
            "document", data, file_name, mime or "application/octet-stream"
        )
        return "document", self._with_caption({"document": record.api_document()}, spec)

    def _user_voice(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A voice note (OGG/Opus)."""
        spec = spec if isinstance(spec, dict) else {}
        record = self.world.store_file("voice", b"OggS emulator voice", None, "audio/ogg")
        voice = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "duration": int(spec.get("duration", 2)),
            "mime_type": "audio/ogg",
            "file_size": len(record.data),
        }
        return "voice", {"voice": voice}

    def _user_video(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A video (MP4)."""
        spec = spec if isinstance(spec, dict) else {}
        record = self.world.store_file(
            "video", b"\x00\x00\x00\x18ftypmp42", "video.mp4", "video/mp4"
        )
        video = {
            "file_id": record.file_id,
            "file_unique_id": record.file_unique_id,
            "width": 640,
            "height": 360,
            "duration": int(spec.get("duration", 5)),
            "mime_type": "video/mp4",
            "file_size": len(record.data),
        }
        return "video", self._with_caption({"video": video}, spec)
