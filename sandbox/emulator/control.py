"""The control API (``/control/...``): tests and the web chat act as users and look in.

:class:`ControlApi` serves the HTTP endpoints: create users, have them send messages,
edit them and press buttons (through the
:class:`~sandbox.emulator.users.UserSimulator`), inject raw updates, wait until the
bot confirmed an update, read chats, the call log, commands and files, switch rate
limits and faults, read call statistics, and reset everything. Answers are JSON;
a :class:`~sandbox.emulator.protocol.ControlError` becomes ``{"ok": false, ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.emulator.protocol import ControlError, maybe_int
from sandbox.emulator.records import ChatRecord, UserRecord

if TYPE_CHECKING:
    from sandbox.emulator.server import BotApiEmulator

Handler = Callable[[web.Request], Awaitable[Any]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlApi:
    """The control endpoints of one emulator (whose parts it reads and drives)."""

    def __init__(self, emulator: BotApiEmulator) -> None:
        # The emulator's parts live as long as it does (reset clears them in place).
        self.emulator = emulator
        self.world = emulator.world
        self.updates = emulator.updates
        self.simulator = emulator.simulator
        self.api = emulator.api

    def routes(self) -> Iterable[tuple[str, str, Route]]:
        """Return (HTTP method, path, aiohttp handler) for every control endpoint."""
        table: tuple[tuple[str, str, Handler], ...] = (
            ("GET", "/control/bot", self._c_bot),
            ("POST", "/control/users", self._c_upsert_user),
            ("POST", "/control/users/bulk", self._c_bulk_users),
            ("GET", "/control/stats", self._c_stats),
            ("DELETE", "/control/stats", self._c_stats),
            ("POST", "/control/users/{user_id}/messages", self._c_user_message),
            ("POST", "/control/users/{user_id}/edits", self._c_user_edit),
            ("POST", "/control/users/{user_id}/callbacks", self._c_user_callback),
            ("POST", "/control/users/{user_id}/block", self._c_user_block),
            ("POST", "/control/updates", self._c_inject),
            ("GET", "/control/wait", self._c_wait),
            ("GET", "/control/chats/{chat_id}", self._c_chat),
            ("GET", "/control/events", self._c_events),
            ("GET", "/control/commands", self._c_commands),
            ("GET", "/control/files/{file_id}", self._c_file),
            ("GET", "/control/limits", self._c_limits),
            ("POST", "/control/limits", self._c_limits),
            ("GET", "/control/faults", self._c_faults),
            ("POST", "/control/faults", self._c_faults),
            ("DELETE", "/control/faults", self._c_faults),
            ("POST", "/control/reset", self._c_reset),
        )
        return [(method, path, self._control(handler)) for method, path, handler in table]

    @staticmethod
    def _control(handler: Handler) -> Route:
        """Wrap a control handler: dict results become JSON, ControlError becomes ok=false."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                result = await handler(request)
            except ControlError as exc:
                return web.json_response({"ok": False, "error": str(exc)}, status=exc.status)
            if isinstance(result, web.StreamResponse):
                return result
            return web.json_response(result)

        return wrapped

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        """Return the request's JSON object body (empty when there is none)."""
        if not request.body_exists:
            return {}
        try:
            body = await request.json()
        except ValueError:
            raise ControlError(400, "body must be JSON") from None
        if not isinstance(body, dict):
            raise ControlError(400, "body must be a JSON object")
        return body

    def _path_user(self, request: web.Request) -> tuple[UserRecord, ChatRecord]:
        """Return the user (and chat) named in the URL, or 404."""
        user = self.world.users.get(maybe_int(request.match_info["user_id"]) or 0)
        if user is None:
            raise ControlError(404, "unknown user; create it with POST /control/users first")
        return user, self.world.chats[user.id]

    # ----------------------------------------------------------------- views

    def _effective_commands(self, chat: ChatRecord) -> list[dict[str, str]]:
        """Return the command menu Telegram would show in this chat, in its scope order."""
        language = chat.user.language_code or ""
        scopes = (
            {"type": "chat", "chat_id": chat.user.id},
            {"type": "all_private_chats"},
            {"type": "default"},
        )
        for scope in scopes:
            for lang in dict.fromkeys((language, "")):
                entry = self.world.commands.get((json.dumps(scope, sort_keys=True), lang))
                if entry:
                    return entry["commands"]
        return []

    def _chat_view(self, chat: ChatRecord) -> dict[str, Any]:
        """Return the control-API view of a chat."""
        messages = sorted(chat.messages.values(), key=lambda m: m.message_id)
        return {
            "ok": True,
            "chat_id": chat.user.id,
            "user": asdict(chat.user),
            "messages": [self.world.message_view(msg) for msg in messages],
            "reply_keyboard": chat.reply_keyboard,
            "commands": self._effective_commands(chat),
            "callback_answers": chat.callback_answers,
            "last_seq": self.world.seq,
        }

    # ----------------------------------------------------------------- bot, users, stats

    async def _c_bot(self, request: web.Request) -> dict[str, Any]:
        """GET /control/bot: the emulated bot's identity."""
        return {"ok": True, "bot": self.world.bot_user(), "base_url": self.emulator.base_url}

    async def _c_upsert_user(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users: create or update a user and their chat."""
        user = self.simulator.upsert(await self._body(request))
        return {"ok": True, "user": asdict(user)}

    async def _c_bulk_users(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/bulk: create or update many users ({"users": [...]})."""
        users = (await self._body(request)).get("users")
        if not isinstance(users, list):
            raise ControlError(400, "give a list of users")
        for spec in users:
            if not isinstance(spec, dict):
                raise ControlError(400, "each user is an object")
            self.simulator.upsert(spec)
        return {"ok": True, "count": len(users)}

    async def _c_stats(self, request: web.Request) -> dict[str, Any]:
        """GET /control/stats[?per_chat=1]: call counts by method and status, the span
        between the first and last success per method, sends per chat; DELETE resets."""
        stats = self.emulator.stats
        if request.method == "DELETE":
            stats.reset()
        return {"ok": True, **stats.view(request.query.get("per_chat") == "1")}

    # ----------------------------------------------------------------- what users do

    async def _c_user_message(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/messages: the user sends text, a contact, media..."""
        user, chat = self._path_user(request)
        update_id, msg = self.simulator.send(user, chat, await self._body(request))
        return {"ok": True, "update_id": update_id, "message_id": msg.message_id, "seq": msg.seq}

    async def _c_user_edit(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/edits: the user edits one of their text messages."""
        user, chat = self._path_user(request)
        update_id, msg = self.simulator.edit(user, chat, await self._body(request))
        return {"ok": True, "update_id": update_id, "message_id": msg.message_id, "seq": msg.seq}

    async def _c_user_callback(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/callbacks: the user presses (or forges) an inline button."""
        user, chat = self._path_user(request)
        update_id, query, seq = self.simulator.press(user, chat, await self._body(request))
        return {"ok": True, "update_id": update_id, "callback_query_id": query.id, "seq": seq}

    async def _c_user_block(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/block: the user blocks or unblocks the bot."""
        user, _ = self._path_user(request)
        user.blocked = bool((await self._body(request)).get("blocked", True))
        return {"ok": True, "blocked": user.blocked}

    async def _c_inject(self, request: web.Request) -> dict[str, Any]:
        """POST /control/updates: queue a raw update (a given update_id is used as-is)."""
        update_id, seq = self.simulator.inject((await self._body(request)).get("update"))
        return {"ok": True, "update_id": update_id, "seq": seq}

    async def _c_wait(self, request: web.Request) -> dict[str, Any]:
        """GET /control/wait?update_id=N&timeout=T: until the bot confirmed update N."""
        updates = self.updates
        update_id = maybe_int(request.query.get("update_id"))
        if update_id is None or update_id not in updates.issued:
            raise ControlError(404, "unknown update_id")
        try:
            timeout = min(float(request.query.get("timeout", 10)), 300.0)
        except ValueError:
            raise ControlError(400, "timeout must be a number") from None
        confirmed = await updates.wait_for(
            lambda: updates.is_confirmed(update_id) or updates.closing, timeout
        )
        if updates.closing:
            raise ControlError(503, "the emulator is shutting down")
        if not confirmed:
            raise ControlError(504, f"update {update_id} was not confirmed within {timeout}s")
        return {"ok": True, "update_id": update_id, "last_seq": self.world.seq}

    # ----------------------------------------------------------------- what the bot did

    async def _c_chat(self, request: web.Request) -> dict[str, Any]:
        """GET /control/chats/{chat_id}: messages, keyboard, commands, callback answers."""
        chat = self.world.chats.get(maybe_int(request.match_info["chat_id"]) or 0)
        if chat is None:
            raise ControlError(404, "unknown chat")
        return self._chat_view(chat)

    async def _c_events(self, request: web.Request) -> dict[str, Any]:
        """GET /control/events?since=SEQ&chat_id=ID: the Bot API calls the bot made."""
        since = maybe_int(request.query.get("since", 0)) or 0
        chat_id = maybe_int(request.query.get("chat_id"))
        events = [
            event
            for event in self.api.events
            if event["seq"] > since and (chat_id is None or event["chat_id"] == chat_id)
        ]
        return {"ok": True, "events": events, "last_seq": self.world.seq}

    async def _c_commands(self, request: web.Request) -> dict[str, Any]:
        """GET /control/commands: everything stored with setMyCommands."""
        return {"ok": True, "commands": list(self.world.commands.values())}

    async def _c_file(self, request: web.Request) -> web.Response:
        """GET /control/files/{file_id}: the raw bytes of a stored file."""
        record = self.world.files.get(request.match_info["file_id"])
        if record is None:
            raise ControlError(404, "unknown file_id")
        return web.Response(
            body=record.data, content_type=record.mime_type or "application/octet-stream"
        )

    # ----------------------------------------------------------------- limits, faults, reset

    async def _c_limits(self, request: web.Request) -> dict[str, Any]:
        """GET/POST /control/limits: read or change rate limits (buckets start full)."""
        limiter = self.emulator.limiter
        if request.method == "POST":
            try:
                limiter.configure(**await self._body(request))
            except ValueError as exc:
                raise ControlError(400, str(exc)) from None
        return {"ok": True, "limits": asdict(limiter.limits)}

    async def _c_faults(self, request: web.Request) -> dict[str, Any]:
        """GET/POST/DELETE /control/faults: list, add (or ``{"clear": true}``) or clear faults."""
        faults = self.emulator.faults
        body = await self._body(request) if request.method == "POST" else {}
        if request.method == "DELETE" or body.get("clear"):
            faults.rules.clear()
        elif request.method == "POST":
            try:
                faults.add(body)
            except (TypeError, ValueError) as exc:
                raise ControlError(400, str(exc)) from None
        return {"ok": True, "faults": [rule.view() for rule in faults.active()]}

    async def _c_reset(self, request: web.Request) -> dict[str, Any]:
        """POST /control/reset: forget everything except the bot itself."""
        self.emulator.reset()
        return {"ok": True}
