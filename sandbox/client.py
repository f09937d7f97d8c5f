"""Async client for the emulator's control API: act as users, read what the bot did.

Typical use in a test::

    client = EmulatorClient(base_url)
    siti = await client.user(1001, "Siti", phone_number="+6281234567890")
    replies = await siti.send("/start")
    replies = await siti.press("Cek status")
    assert "PKH" in (await siti.last()).text
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import aiohttp

_UNSET: Any = object()


class EmulatorError(RuntimeError):
    """The control API refused a request (unknown user, bad body, ...)."""


@dataclass
class BotMessage:
    """A message the bot sent (as the control API reports it)."""

    message_id: int
    text: str
    html: str | None
    kind: str
    reply_markup: dict[str, Any] | None
    document: dict[str, Any] | None
    location: dict[str, Any] | None
    venue: dict[str, Any] | None
    edited: bool
    deleted: bool
    parse_mode: str | None = None
    contact: dict[str, Any] | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    date: int = 0
    seq: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> BotMessage:
        """Build from one entry of ``GET /control/chats/{id}`` messages."""
        names = cls.__dataclass_fields__.keys() - {"raw"}
        return cls(**{name: view[name] for name in names if name in view}, raw=view)

    @property
    def inline_buttons(self) -> list[list[dict[str, Any]]]:
        """Rows of the inline keyboard (empty when there is none)."""
        return list((self.reply_markup or {}).get("inline_keyboard", []))

    @property
    def button_labels(self) -> list[str]:
        """Texts of every inline button, row by row."""
        return [button["text"] for row in self.inline_buttons for button in row]

    def find_button(self, label: str) -> dict[str, Any] | None:
        """Return the button matching ``label`` (exact, else unique substring) or None."""
        buttons = [button for row in self.inline_buttons for button in row]
        exact = [button for button in buttons if button["text"] == label]
        if exact:
            return exact[0]
        partial = [button for button in buttons if label.casefold() in button["text"].casefold()]
        if len(partial) > 1:
            texts = ", ".join(repr(button["text"]) for button in partial)
            raise AssertionError(f"{label!r} matches several buttons: {texts}")
        return partial[0] if partial else None

    def button(self, label: str) -> dict[str, Any]:
        """Return the button matching ``label`` or fail listing the buttons there are."""
        found = self.find_button(label)
        if found is None:
            raise AssertionError(
                f"no button {label!r} on message {self.message_id}; buttons: {self.button_labels}"
            )
        return found


class EmulatorClient:
    """Wraps the emulator's control API over aiohttp."""

    def __init__(self, base_url: str, *, wait_timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.wait_timeout = wait_timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EmulatorClient:
        """Use as an async context manager."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the HTTP session."""
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        """Return the (lazily created) HTTP session."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Call a control endpoint and return its JSON, raising EmulatorError on failure."""
        url = f"{self.base_url}/control{path}"
        async with self._http().request(method, url, json=json, params=params) as response:
            body = await response.json()
        if not body.get("ok"):
            raise EmulatorError(f"{method} {path}: {body.get('error', body)}")
        return body

    async def user(
        self,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None = None,
        language_code: str | None = "id",
        phone_number: str | None = None,
        username: str | None = None,
    ) -> ChatUser:
        """Create (or update) a user with a private chat and return a handle to act as them."""
        spec = {
            "id": user_id,
            "first_name": first_name,
            "last_name": last_name,
            "language_code": language_code,
            "phone_number": phone_number,
            "username": username,
        }
        await self.request("POST", "/users", json=spec)
        return ChatUser(self, user_id, first_name, phone_number)

    async def events(self, since: int = 0, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Return the Bot API calls the bot made after ``since`` (optionally in one chat)."""
        params: dict[str, Any] = {"since": since}
        if chat_id is not None:
            params["chat_id"] = chat_id
        return (await self.request("GET", "/events", params=params))["events"]

    async def last_seq(self) -> int:
        """Return the current sequence number (use as ``since`` for later events)."""
        return (await self.request("GET", "/events", params={"since": 2**62}))["last_seq"]

    async def inject(self, update: dict[str, Any], *, wait: bool = True) -> int:
        """Queue a raw update (its update_id is used as-is when given); return the id."""
        update_id = (await self.request("POST", "/updates", json={"update": update}))["update_id"]
        if wait:
            await self.wait(update_id)
        return update_id

    async def wait(self, update_id: int, seconds: float | None = None) -> None:
        """Wait until the bot confirmed ``update_id``; fail with recent API errors if not."""
        timeout = self.wait_timeout if seconds is None else seconds
        try:
            await self.request("GET", "/wait", params={"update_id": update_id, "timeout": timeout})
        except EmulatorError as exc:
            errors = await self.recent_errors()
            raise AssertionError(f"{exc}; last Bot API errors: {errors}") from None

    async def recent_errors(self, limit: int = 5) -> list[str]:
        """Return the newest failed Bot API calls as short "method: description" lines."""
        failed = [event for event in await self.events() if not event["ok"]][-limit:]
        return [f"{event['method']}: {event['error']}" for event in failed]

    async def chat(self, chat_id: int) -> dict[str, Any]:
        """Return the control view of a chat (messages, reply_keyboard, commands, ...)."""
        return await self.request("GET", f"/chats/{chat_id}")

    async def set_limits(
        self,
        *,
        enabled: bool = _UNSET,
        global_rate: float | None = _UNSET,
        global_burst: float = _UNSET,
        per_chat_rate: float | None = _UNSET,
        per_chat_burst: float = _UNSET,
    ) -> dict[str, Any]:
        """Change rate limits (a None rate disables that limit); return the settings."""
        values = {
            "enabled": enabled,
            "global_rate": global_rate,
            "global_burst": global_burst,
            "per_chat_rate": per_chat_rate,
            "per_chat_burst": per_chat_burst,
        }
        changes = {name: value for name, value in values.items() if value is not _UNSET}
        return (await self.request("POST", "/limits", json=changes))["limits"]

    async def faults(
        self,
        status: int | None = None,
        *,
        count: int | None = None,
        seconds: float | None = None,
        retry_after: int | None = None,
        delay: float | None = None,
        methods: list[str] | None = None,
        description: str | None = None,
        clear: bool = False,
    ) -> list[dict[str, Any]]:
        """Add a fault rule (or clear them all); return the active rules."""
        if clear:
            return (await self.request("DELETE", "/faults"))["faults"]
        spec = {
            "status": status,
            "count": count,
            "seconds": seconds,
            "retry_after": retry_after,
            "delay": delay,
            "methods": methods,
            "description": description,
        }
        body = {name: value for name, value in spec.items() if value is not None}
        return (await self.request("POST", "/faults", json=body))["faults"]

    async def commands(self) -> list[dict[str, Any]]:
        """Return every command list set with setMyCommands (scope, language_code, commands)."""
        return (await self.request("GET", "/commands"))["commands"]

    async def file(self, file_id: str) -> bytes:
        """Return the raw bytes of a stored file (e.g. an exported CSV)."""
        async with self._http().get(f"{self.base_url}/control/files/{file_id}") as response:
            if response.status != 200:
                raise EmulatorError(f"file {file_id}: HTTP {response.status}")
            return await response.read()

    async def bulk_users(self, users: list[dict[str, Any]]) -> int:
        """Create (or update) many users at once: dicts with id, first_name, language_code..."""
        return int((await self.request("POST", "/users/bulk", json={"users": users}))["count"])

    async def stats(self, *, per_chat: bool = False) -> dict[str, Any]:
        """Bot API call counts by method and status, success spans, sends per chat."""
        params = {"per_chat": "1"} if per_chat else None
        return await self.request("GET", "/stats", params=params)

    async def reset_stats(self) -> None:
        await self.request("DELETE", "/stats")

    async def reset(self) -> None:
        """Forget users, chats, updates and logs (the bot stays)."""
        await self.request("POST", "/reset")


class ChatUser:
    """A simulated user in a private chat with the bot."""

    def __init__(
        self, client: EmulatorClient, user_id: int, first_name: str, phone_number: str | None
    ) -> None:
        self.client = client
        self.id = user_id
        self.first_name = first_name
        self.phone_number = phone_number

    def __repr__(self) -> str:
        """Show who this is."""
        return f"ChatUser(id={self.id}, first_name={self.first_name!r})"

    async def _act(self, path: str, body: dict[str, Any]) -> list[BotMessage]:
        """Post a user action, wait until the bot handled it, return what the bot changed."""
        sent = await self.client.request("POST", f"/users/{self.id}/{path}", json=body)
        await self.client.wait(sent["update_id"])
        return await self.changed_since(sent["seq"])

    async def changed_since(self, seq: int) -> list[BotMessage]:
        """Return bot messages created, edited or deleted after ``seq``, in change order."""
        view = await self.client.chat(self.id)
        changed = [m for m in view["messages"] if m["from_bot"] and m["seq"] > seq]
        return [BotMessage.from_view(m) for m in sorted(changed, key=lambda m: m["seq"])]

    async def send(self, text: str) -> list[BotMessage]:
        """Send a text message; return the bot messages created or changed while handling it."""
        return await self._act("messages", {"text": text})

    async def send_html(self, html: str) -> list[BotMessage]:
        """Send a formatted text message (HTML as the user's app would produce)."""
        return await self._act("messages", {"text": {"html": html}})

    async def share_contact(
        self, phone_number: str | None = None, *, own: bool = True
    ) -> list[BotMessage]:
        """Share a contact: by default their own (user_id set), else someone else's."""
        phone = phone_number or self.phone_number
        if phone is None:
            raise AssertionError(f"{self!r} has no phone_number; pass one to share_contact()")
        contact: dict[str, Any] = {"phone_number": phone}
        if own:
            contact.update(first_name=self.first_name, user_id=self.id)
        else:
            contact["first_name"] = "Orang Lain"
        return await self._act("messages", {"contact": contact})

    async def share_location(self, latitude: float, longitude: float) -> list[BotMessage]:
        """Share a location."""
        location = {"latitude": latitude, "longitude": longitude}
        return await self._act("messages", {"location": location})

    async def send_sticker(self, emoji: str = "👍") -> list[BotMessage]:
        """Send a sticker."""
        return await self._act("messages", {"sticker": {"emoji": emoji}})

    async def send_photo(self, caption: str | None = None) -> list[BotMessage]:
        """Send a photo."""
        return await self._act("messages", {"photo": {"caption": caption}})

    async def send_document(
        self, file_name: str, content: bytes | str | None = None
    ) -> list[BotMessage]:
        """Send a document; ``content`` is what the bot downloads with getFile."""
        spec: dict[str, Any] = {"file_name": file_name}
        if isinstance(content, bytes):
            spec["content_base64"] = base64.b64encode(content).decode()
        elif content is not None:
            spec["content"] = content
        return await self._act("messages", {"document": spec})

    async def send_voice(self) -> list[BotMessage]:
        """Send a voice note."""
        return await self._act("messages", {"voice": {}})

    async def edit(self, message_id: int, text: str) -> list[BotMessage]:
        """Edit one of this user's text messages (an edited_message update)."""
        return await self._act("edits", {"message_id": message_id, "text": text})

    async def callback(self, message_id: int, data: str) -> list[BotMessage]:
        """Press a button of ``message_id`` with arbitrary (possibly forged) callback data."""
        return await self._act("callbacks", {"message_id": message_id, "data": data})

    async def press(
        self, label: str, *, location: tuple[float, float] | None = None
    ) -> list[BotMessage]:
        """Press a reply-keyboard button by text, else the newest inline button matching it."""
        view = await self.client.chat(self.id)
        reply_button = _reply_button(view["reply_keyboard"], label)
        if reply_button is not None:
            return await self._press_reply(reply_button, location)
        bot_messages = [
            BotMessage.from_view(m) for m in view["messages"] if m["from_bot"] and not m["deleted"]
        ]
        for message in reversed(bot_messages):
            button = message.find_button(label)
            if button is None:
                continue
            if "callback_data" not in button:
                raise AssertionError(f"button {label!r} has no callback_data: {button}")
            return await self.callback(message.message_id, button["callback_data"])
        latest = next((m for m in reversed(bot_messages) if m.inline_buttons), None)
        raise AssertionError(
            f"no button {label!r}; reply keyboard: {_reply_labels(view['reply_keyboard'])}; "
            f"latest inline buttons: {latest.button_labels if latest else None}; "
            f"last Bot API errors: {await self.client.recent_errors()}"
        )

    async def _press_reply(
        self, button: dict[str, Any], location: tuple[float, float] | None
    ) -> list[BotMessage]:
        """Act out a reply-keyboard button: share contact, share location or send its text."""
        if button.get("request_contact"):
            return await self.share_contact()
        if button.get("request_location"):
            if location is None:
                raise AssertionError(
                    f"button {button['text']!r} asks for a location; "
                    "use press(label, location=(lat, lon))"
                )
            return await self.share_location(*location)
        return await self.send(button["text"])

    async def last(self) -> BotMessage:
        """Return the newest non-deleted bot message in this chat."""
        messages = await self.messages()
        if not messages:
            raise AssertionError(f"the bot has not sent anything to {self!r}")
        return messages[-1]

    async def messages(self, *, include_deleted: bool = False) -> list[BotMessage]:
        """Return the bot's messages in this chat, oldest first (deleted ones on request)."""
        view = await self.client.chat(self.id)
        return [
            BotMessage.from_view(m)
            for m in view["messages"]
            if m["from_bot"] and (include_deleted or not m["deleted"])
        ]

    async def reply_keyboard(self) -> list[str] | None:
        """Return the labels of the reply keyboard currently shown, or None."""
        return _reply_labels((await self.client.chat(self.id))["reply_keyboard"])

    async def commands(self) -> list[dict[str, str]]:
        """Return the command menu this user sees (scope and language resolved)."""
        return (await self.client.chat(self.id))["commands"]

    async def callback_answers(self) -> list[dict[str, Any]]:
        """Return the bot's answerCallbackQuery calls for this user's presses."""
        return (await self.client.chat(self.id))["callback_answers"]

    async def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Return the Bot API calls the bot made in this chat."""
        return await self.client.events(since, chat_id=self.id)

    async def block(self, blocked: bool = True) -> None:
        """Block (or unblock) the bot: its sends then fail with 403."""
        await self.client.request("POST", f"/users/{self.id}/block", json={"blocked": blocked})


def _reply_labels(keyboard: dict[str, Any] | None) -> list[str] | None:
    """Return the labels of a reply keyboard, row by row, or None."""
    if not keyboard:
        return None
    return [button["text"] for row in keyboard["keyboard"] for button in row]


def _reply_button(keyboard: dict[str, Any] | None, label: str) -> dict[str, Any] | None:
    """Return the reply-keyboard button whose text is exactly ``label``."""
    if not keyboard:
        return None
    for row in keyboard["keyboard"]:
        for button in row:
            if button["text"] == label:
                return button
    return None
