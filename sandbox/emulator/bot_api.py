"""The Bot API methods: ``/bot{token}/{method}`` answered like Telegram answers them.

:class:`BotApi` serves the Bot API routes, looks each method up in its table of
:class:`MethodSpec`, applies fault rules, runs the method against the shared
:class:`~sandbox.emulator.state.World`, and logs every call for ``/control/events``
and :class:`~sandbox.emulator.records.CallStats`. Sending methods pass the rate
limiter; getUpdates long-polls the :class:`~sandbox.emulator.updates.UpdateQueue`;
setWebhook hands delivery to the :class:`~sandbox.emulator.updates.WebhookPusher`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import mimetypes
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sandbox.emulator.limits import FaultInjector, RateLimiter
from sandbox.emulator.protocol import (
    METHOD_NOT_FOUND,
    UNAUTHORIZED,
    ApiError,
    Params,
    Upload,
    bad_request,
    maybe_int,
    read_request_params,
)
from sandbox.emulator.records import Call, CallStats, ChatRecord, FileRecord, StoredMessage, Webhook
from sandbox.emulator.state import World
from sandbox.emulator.updates import UpdateQueue, WebhookPusher
from sandbox.emulator.validation import (
    CHAT_ACTIONS,
    REACTION_EMOJI,
    SCOPE_TYPES,
    Formatted,
    caption_fields,
    check_commands,
    check_secret_token,
    coordinates,
    message_text,
    normalize_markup,
)
from sandbox.html import utf16_len

CALLBACK_ANSWER_LIMIT = 200
CALLBACK_QUERY_TTL = 15 * 60
EVENT_LOG_SIZE = 200_000

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of a message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


@dataclass(frozen=True)
class MethodSpec:
    """A Bot API method name and the function implementing it."""

    name: str
    handler: Callable[[Call], Any]
    sends: bool = False  # posts a new message into a chat (counted per chat in stats)


class BotApi:
    """The Bot API of one bot, over the emulator's shared state."""

    def __init__(
        self,
        token: str,
        world: World,
        updates: UpdateQueue,
        pusher: WebhookPusher,
        limiter: RateLimiter,
        faults: FaultInjector,
        stats: CallStats,
        *,
        max_long_poll: float,
        event_log: bool,
    ) -> None:
        self.token = token
        self.world = world
        self.updates = updates
        self.pusher = pusher
        self.limiter = limiter
        self.faults = faults
        self.stats = stats
        self.max_long_poll = max_long_poll
        # The per-call event log (GET /control/events) costs CPU per call; a benchmark
        # that reads only /control/stats switches it off.
        self.event_log = event_log
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_SIZE)
        self._methods = {spec.name.lower(): spec for spec in self._method_specs()}

    # ----------------------------------------------------------------- transport

    async def handle_api(self, request: web.Request) -> web.Response:
        """Serve ``/bot{token}/{method}``."""
        if request.match_info["token"] != self.token:
            return web.json_response(UNAUTHORIZED.payload(), status=401)
        try:
            params = await read_request_params(request)
        except ApiError as exc:
            return web.json_response(exc.payload(), status=exc.error_code)
        status, body = await self.call(request.match_info["method"], params)
        return web.json_response(body, status=status)

    async def handle_file(self, request: web.Request) -> web.Response:
        """Serve ``/file/bot{token}/{file_path}`` downloads."""
        if request.match_info["token"] != self.token:
            return web.json_response(UNAUTHORIZED.payload(), status=401)
        record = self.world.file_paths.get(request.match_info["path"])
        if record is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        return web.Response(body=record.data, content_type="application/octet-stream")

    async def call(self, method: str, params: Params) -> tuple[int, dict[str, Any]]:
        """Execute one Bot API method and return (HTTP status, response body)."""
        spec = self._methods.get(method.lower())
        if spec is None:
            return 404, METHOD_NOT_FOUND.payload()
        call = Call(spec.name, params)
        try:
            await self._apply_fault(call)
            result = spec.handler(call)
            if inspect.isawaitable(result):
                result = await result
        except ApiError as exc:
            self._log_call(call, exc)
            self.stats.record(spec.name, exc.error_code, call.chat_id, spec.sends)
            return exc.error_code, exc.payload()
        self._log_call(call, None)
        self.stats.record(spec.name, 200, call.chat_id, spec.sends)
        return 200, {"ok": True, "result": result}

    async def _apply_fault(self, call: Call) -> None:
        """Delay and/or fail the call when a fault rule says so."""
        fault = self.faults.take(call.method)
        if fault is None:
            return
        if fault.delay:
            await asyncio.sleep(fault.delay)
        error = fault.error()
        if error is not None:
            raise error

    def _log_call(self, call: Call, error: ApiError | None) -> None:
        """Append a call to the event log (successful getUpdates calls are left out)."""
        if not self.event_log:
            return
        if call.method == "getUpdates" and error is None:
            return
        chat_id = (
            call.chat_id if call.chat_id is not None else maybe_int(call.params.raw("chat_id"))
        )
        self.events.append(
            {
                "seq": self.world.next_seq(),
                "time": time.time(),
                "method": call.method,
                "chat_id": chat_id,
                "message_id": call.message_id,
                "ok": error is None,
                "error": error.description if error else None,
                "error_code": error.error_code if error else None,
                "params": call.params.loggable(),
            }
        )

    def _method_specs(self) -> list[MethodSpec]:
        """Return every supported Bot API method."""
        return [
            MethodSpec("getMe", self._get_me),
            MethodSpec("getUpdates", self._get_updates),
            MethodSpec("sendMessage", self._send_message, sends=True),
            MethodSpec("sendDocument", self._send_document, sends=True),
            MethodSpec("sendPhoto", self._send_photo, sends=True),
            MethodSpec("sendLocation", self._send_location, sends=True),
            MethodSpec("sendVenue", self._send_venue, sends=True),
            MethodSpec("sendContact", self._send_contact, sends=True),
            MethodSpec("sendChatAction", self._send_chat_action),
            MethodSpec("setMessageReaction", self._set_message_reaction),
            MethodSpec("copyMessage", self._copy_message, sends=True),
            MethodSpec("editMessageText", self._edit_message_text),
            MethodSpec("editMessageCaption", self._edit_message_caption),
            MethodSpec("editMessageReplyMarkup", self._edit_message_reply_markup),
            MethodSpec("deleteMessage", self._delete_message),
            MethodSpec("answerCallbackQuery", self._answer_callback_query),
            MethodSpec("setMyCommands", self._set_my_commands),
            MethodSpec("getMyCommands", self._get_my_commands),
            MethodSpec("deleteMyCommands", self._delete_my_commands),
            MethodSpec("setWebhook", self._set_webhook),
            MethodSpec("deleteWebhook", self._delete_webhook),
            MethodSpec("getWebhookInfo", self._get_webhook_info),
            MethodSpec("getFile", self._get_file),
        ]

    # ----------------------------------------------------------------- shared helpers

    def _find_chat(self, raw: Any) -> ChatRecord:
        """Return the private chat named by a chat_id value or raise "chat not found"."""
        if raw is None:
            raise bad_request("chat_id is empty")
        chat = self.world.chats.get(maybe_int(raw) or 0)
        if chat is None:
            raise bad_request("chat not found")
        return chat

    def _target_chat(self, call: Call, name: str = "chat_id") -> ChatRecord:
        """Resolve the chat a call acts on; a user who blocked the bot gives 403."""
        chat = self._find_chat(call.params.raw(name))
        call.chat_id = chat.user.id
        if chat.user.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _post(
        self,
        call: Call,
        chat: ChatRecord,
        kind: str,
        content: dict[str, Any],
        formatted: Formatted | None = None,
    ) -> dict[str, Any]:
        """Validate reply_markup, apply rate limits and store a bot message; return it."""
        markup = normalize_markup(call.params.get_json("reply_markup"))
        self.limiter.acquire(chat.user.id, count_global=True)
        msg = self.world.store_message(
            chat, kind, content, from_bot=True, formatted=formatted, markup=markup
        )
        if markup and "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup and "remove_keyboard" in markup:
            chat.reply_keyboard = None
        call.message_id = msg.message_id
        self.world.publish_message(chat, msg)
        return self.world.api_message(msg)

    def _input_file(self, params: Params, name: str, kind: str) -> FileRecord:
        """Resolve an InputFile parameter: an upload, a known file_id or an HTTP URL."""
        value = params.get_file(name)
        if value is None:
            raise bad_request(f"there is no {name} in the request")
        if isinstance(value, Upload):
            if not value.data:
                raise bad_request("file must be non-empty")
            guessed = mimetypes.guess_type(value.filename)[0]
            mime = guessed or value.content_type or "application/octet-stream"
            return self.world.store_file(kind, value.data, value.filename, mime)
        if value in self.world.files:
            return self.world.files[value]
        if value.startswith(("http://", "https://")):
            file_name = value.rstrip("/").rsplit("/", 1)[-1] or "file"
            return self.world.store_file(kind, b"", file_name, mimetypes.guess_type(file_name)[0])
        raise bad_request("wrong file identifier/HTTP URL specified")

    # ----------------------------------------------------------------- getMe, getUpdates

    def _get_me(self, call: Call) -> dict[str, Any]:
        """getMe: the bot's own User object with capability flags."""
        return {
            **self.world.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        """getUpdates: confirm by offset, then long-poll for pending updates."""
        if self.pusher.hook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        params = call.params
        offset = params.get_int("offset") or 0
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        timeout = min(max(params.get_float("timeout") or 0.0, 0.0), self.max_long_poll)
        updates = self.updates
        updates.confirm_offset(offset)
        if timeout:
            await updates.wait_for(
                lambda: bool(updates.pending) or updates.closing or self.pusher.hook is not None,
                timeout,
            )
        if self.pusher.hook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        return updates.take(limit)

    # ----------------------------------------------------------------- sending

    def _send_message(self, call: Call) -> dict[str, Any]:
        """sendMessage: text with optional HTML and reply markup."""
        chat = self._target_chat(call)
        formatted = message_text(call.params)
        content: dict[str, Any] = {"text": formatted.text}
        if formatted.entities:
            content["entities"] = formatted.entities
        return self._post(call, chat, "text", content, formatted)

    def _send_document(self, call: Call) -> dict[str, Any]:
        """sendDocument: an uploaded file, a known file_id or a URL, with a caption."""
        chat = self._target_chat(call)
        record = self._input_file(call.params, "document", "document")
        caption, formatted = caption_fields(call.params)
        content = {"document": record.api_document(), **caption}
        return self._post(call, chat, "document", content, formatted)

    def _send_photo(self, call: Call) -> dict[str, Any]:
        """sendPhoto: a photo stored in three sizes, with a caption."""
        chat = self._target_chat(call)
        record = self._input_file(call.params, "photo", "photo")
        caption, formatted = caption_fields(call.params)
        content = {"photo": self.world.photo_sizes(record.data), **caption}
        return self._post(call, chat, "photo", content, formatted)

    def _send_location(self, call: Call) -> dict[str, Any]:
        """sendLocation: a map point."""
        chat = self._target_chat(call)
        location = coordinates(call.params)
        return self._post(call, chat, "location", {"location": location})

    def _send_venue(self, call: Call) -> dict[str, Any]:
        """sendVenue: a named place; the message carries both venue and location."""
        chat = self._target_chat(call)
        params = call.params
        location = coordinates(params)
        title, address = params.get_str("title"), params.get_str("address")
        if not title:
            raise bad_request("venue title must be non-empty")
        if not address:
            raise bad_request("venue address must be non-empty")
        venue = {"location": location, "title": title, "address": address}
        for name in ("foursquare_id", "foursquare_type", "google_place_id", "google_place_type"):
            if params.raw(name) is not None:
                venue[name] = params.get_str(name)
        return self._post(call, chat, "venue", {"venue": venue, "location": location})

    def _send_contact(self, call: Call) -> dict[str, Any]:
        """sendContact: a phone contact card."""
        chat = self._target_chat(call)
        params = call.params
        phone, first_name = params.get_str("phone_number"), params.get_str("first_name")
        if not phone:
            raise bad_request("phone number must be non-empty")
        if not first_name:
            raise bad_request("contact first name must be non-empty")
        contact = {"phone_number": phone, "first_name": first_name}
        for name in ("last_name", "vcard"):
            if params.raw(name) is not None:
                contact[name] = params.get_str(name)
        return self._post(call, chat, "contact", {"contact": contact})

    def _send_chat_action(self, call: Call) -> bool:
        """sendChatAction: accepted for known actions; nothing is stored."""
        self._target_chat(call)
        if call.params.get_str("action") not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    def _set_message_reaction(self, call: Call) -> bool:
        """setMessageReaction: a bot sets at most one emoji reaction on a message of the
        chat (Telegram's rule for non-premium accounts); an empty list removes it."""
        chat = self._target_chat(call)
        msg = chat.messages.get(call.params.get_int("message_id") or 0)
        if msg is None or msg.deleted:
            raise bad_request("message to react not found")
        reactions = call.params.get_json("reaction") or []
        if not isinstance(reactions, list):
            raise bad_request("can't parse reaction types JSON object")
        if len(reactions) > 1:
            raise bad_request("REACTIONS_TOO_MANY")
        for reaction in reactions:
            if not (
                isinstance(reaction, dict)
                and reaction.get("type") == "emoji"
                and reaction.get("emoji") in REACTION_EMOJI
            ):
                raise bad_request("REACTION_INVALID")
        msg.reactions = [reaction["emoji"] for reaction in reactions]
        return True

    def _copy_message(self, call: Call) -> dict[str, Any]:
        """copyMessage: repost a message's content (optionally re-captioned) as the bot."""
        chat = self._target_chat(call)
        source_chat = self._find_chat(call.params.raw("from_chat_id"))
        source = source_chat.messages.get(call.params.get_int("message_id") or 0)
        if source is None or source.deleted:
            raise bad_request("message to copy not found")
        content = copy.deepcopy(source.content)
        formatted = Formatted("", [], source.html, source.parse_mode)
        if source.kind != "text" and call.params.raw("caption") is not None:
            content.pop("caption", None)
            content.pop("caption_entities", None)
            caption, formatted = caption_fields(call.params)
            content.update(caption)
        message = self._post(call, chat, source.kind, content, formatted)
        return {"message_id": message["message_id"]}

    # ----------------------------------------------------------------- editing

    def _editable(self, call: Call) -> tuple[ChatRecord, StoredMessage]:
        """Resolve the bot message an edit call targets, with Telegram's errors."""
        if call.params.raw("inline_message_id") is not None:
            raise bad_request("MESSAGE_ID_INVALID")
        chat = self._target_chat(call)
        call.message_id = call.params.get_int("message_id")
        msg = chat.messages.get(call.message_id or 0)
        if msg is None or msg.deleted:
            raise bad_request("message to edit not found")
        if not msg.from_bot:
            raise bad_request("message can't be edited")
        return chat, msg

    def _apply_edit(
        self,
        chat: ChatRecord,
        msg: StoredMessage,
        content: dict[str, Any],
        markup: dict[str, Any] | None,
        formatted: Formatted | None,
    ) -> dict[str, Any]:
        """Refuse no-op edits, rate-limit per chat, then update the message in place."""
        if content == msg.content and markup == msg.markup:
            raise bad_request(NOT_MODIFIED)
        self.limiter.acquire(chat.user.id, count_global=False)
        msg.content = content
        msg.markup = markup
        if formatted is not None:
            msg.html, msg.parse_mode = formatted.html, formatted.parse_mode
        msg.edit_date = int(time.time())
        msg.seq = self.world.next_seq()
        self.world.publish_message(chat, msg)
        return self.world.api_message(msg)

    def _edit_message_text(self, call: Call) -> dict[str, Any]:
        """editMessageText: new text; the inline keyboard is replaced (or removed)."""
        chat, msg = self._editable(call)
        if "text" not in msg.content:
            raise bad_request("there is no text in the message to edit")
        formatted = message_text(call.params)
        markup = normalize_markup(call.params.get_json("reply_markup"), inline_only=True)
        content: dict[str, Any] = {"text": formatted.text}
        if formatted.entities:
            content["entities"] = formatted.entities
        return self._apply_edit(chat, msg, content, markup, formatted)

    def _edit_message_caption(self, call: Call) -> dict[str, Any]:
        """editMessageCaption: new caption of a media message."""
        chat, msg = self._editable(call)
        if "text" in msg.content or msg.kind in ("location", "venue", "contact"):
            raise bad_request("there is no caption in the message to edit")
        caption, formatted = caption_fields(call.params)
        content = {k: v for k, v in msg.content.items() if k not in ("caption", "caption_entities")}
        content.update(caption)
        markup = normalize_markup(call.params.get_json("reply_markup"), inline_only=True)
        return self._apply_edit(chat, msg, content, markup, formatted)

    def _edit_message_reply_markup(self, call: Call) -> dict[str, Any]:
        """editMessageReplyMarkup: replace or remove the inline keyboard."""
        chat, msg = self._editable(call)
        markup = normalize_markup(call.params.get_json("reply_markup"), inline_only=True)
        return self._apply_edit(chat, msg, msg.content, markup, None)

    def _delete_message(self, call: Call) -> bool:
        """deleteMessage: mark a message of the chat deleted."""
        chat = self._target_chat(call)
        call.message_id = call.params.get_int("message_id")
        msg = chat.messages.get(call.message_id or 0)
        if msg is None or msg.deleted:
            raise bad_request("message to delete not found")
        msg.deleted = True
        msg.seq = self.world.next_seq()
        self.world.publish_message(chat, msg)
        return True

    # ----------------------------------------------------------------- callbacks, commands

    def _answer_callback_query(self, call: Call) -> bool:
        """answerCallbackQuery: record the answer once, within 15 minutes."""
        params = call.params
        query_id = params.get_str("callback_query_id") or ""
        query = self.world.callbacks.get(query_id)
        if query is None:
            raise bad_request(QUERY_INVALID)
        call.chat_id, call.message_id = query.chat_id, query.message_id
        if query.answered or time.monotonic() - query.created > CALLBACK_QUERY_TTL:
            raise bad_request(QUERY_INVALID)
        text = params.get_str("text")
        if text is not None and utf16_len(text) > CALLBACK_ANSWER_LIMIT:
            raise bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        answer = {
            "callback_query_id": query_id,
            "message_id": query.message_id,
            "data": query.data,
            "text": text,
            "show_alert": params.get_bool("show_alert"),
            "url": params.get_str("url"),
            "cache_time": params.get_int("cache_time"),
            "seq": self.world.next_seq(),
        }
        self.world.chats[query.chat_id].callback_answers.append(answer)
        self.world.publish(
            {"type": "callback_answer", "chat_id": query.chat_id, "answer": answer}, query.chat_id
        )
        return True

    def _command_key(self, params: Params) -> tuple[tuple[str, str], dict[str, Any], str]:
        """Return the storage key (scope JSON, language), the scope and the language."""
        scope = params.get_json("scope") or {"type": "default"}
        if not isinstance(scope, dict) or scope.get("type") not in SCOPE_TYPES:
            raise bad_request("can't parse BotCommandScope JSON object")
        scope = {key: value for key, value in scope.items() if value is not None}
        if "chat_id" in scope:
            scope["chat_id"] = self._find_chat(scope["chat_id"]).user.id
        elif scope["type"] in ("chat", "chat_administrators", "chat_member"):
            raise bad_request("chat_id is empty")
        language = params.get_str("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise bad_request("LANG_CODE_INVALID")
        return (json.dumps(scope, sort_keys=True), language), scope, language

    def _set_my_commands(self, call: Call) -> bool:
        """setMyCommands: store commands per (scope, language_code)."""
        key, scope, language = self._command_key(call.params)
        cleaned = check_commands(call.params.get_json("commands"))
        if cleaned:
            self.world.commands[key] = {
                "scope": scope,
                "language_code": language,
                "commands": cleaned,
            }
        else:
            self.world.commands.pop(key, None)
        self.world.publish({"type": "commands"})
        return True

    def _get_my_commands(self, call: Call) -> list[dict[str, str]]:
        """getMyCommands: the list stored for exactly this scope and language."""
        key, _, _ = self._command_key(call.params)
        return copy.deepcopy(self.world.commands.get(key, {}).get("commands", []))

    def _delete_my_commands(self, call: Call) -> bool:
        """deleteMyCommands: forget the list of this scope and language."""
        key, _, _ = self._command_key(call.params)
        self.world.commands.pop(key, None)
        self.world.publish({"type": "commands"})
        return True

    # ----------------------------------------------------------------- webhook, files

    def _set_webhook(self, call: Call) -> bool:
        """setWebhook: switch to push delivery (an empty url removes the webhook)."""
        params = call.params
        url = params.get_str("url") or ""
        if not url:
            return self._delete_webhook(call)
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get_str("secret_token")
        check_secret_token(secret)
        self.pusher.stop()
        if params.get_bool("drop_pending_updates"):
            self.updates.drop_pending()
        allowed = params.get_json("allowed_updates")
        self.pusher.start(Webhook(url, secret, params.get_int("max_connections") or 40, allowed))
        return True

    def _delete_webhook(self, call: Call) -> bool:
        """deleteWebhook: back to getUpdates, optionally dropping pending updates."""
        self.pusher.stop()
        if call.params.get_bool("drop_pending_updates"):
            self.updates.drop_pending()
        return True

    def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        """getWebhookInfo: url, pending count and the last delivery error."""
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self.updates.pending),
        }
        hook = self.pusher.hook
        if hook is not None:
            info["url"] = hook.url
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    def _get_file(self, call: Call) -> dict[str, Any]:
        """getFile: the File object with a downloadable file_path."""
        record = self.world.files.get(call.params.get_str("file_id") or "")
        if record is None:
            raise bad_request("invalid file_id")
        return record.api_file()
