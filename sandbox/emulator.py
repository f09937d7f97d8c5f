"""An in-memory fake of the Telegram Bot API, plus a control API that plays the users.

The Bot API side (``/bot{token}/{method}``, ``/file/bot{token}/{path}``) speaks the
real JSON protocol and enforces Telegram's limits with Telegram's error texts, so
aiogram, python-telegram-bot or any other client can talk to it. The control API
(``/control/...``) lets tests and the browser sandbox act as users (send text,
contacts, locations, button presses), read what the bot did, and switch rate
limits and fault injection. Everything lives in memory on one event loop.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import inspect
import json
import math
import mimetypes
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import MultipartReader, hdrs, web

from sandbox.html import ParseError, parse_html, strip_text, utf16_len

BOT_FIRST_NAME = "Bansos Bot"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
CALLBACK_ANSWER_LIMIT = 200
CALLBACK_QUERY_TTL = 15 * 60
MAX_COMMANDS = 100
EVENT_LOG_SIZE = 200_000
WEBHOOK_BACKOFF = (0.05, 2.0)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of a message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "commands",
        "scope",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
    }
)
INLINE_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
REPLY_REQUESTS = (
    "request_contact",
    "request_location",
    "request_poll",
    "request_users",
    "request_chat",
    "web_app",
)
REPLY_KEYBOARD_OPTIONS = (
    "resize_keyboard",
    "one_time_keyboard",
    "is_persistent",
    "input_field_placeholder",
    "selective",
)
SCOPE_TYPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
FILE_ID_PREFIX = {
    "document": "BQACAgUAAxkBAAI",
    "photo": "AgACAgUAAxkBAAI",
    "sticker": "CAACAgIAAxkBAAI",
    "voice": "AwACAgUAAxkBAAI",
    "video": "BAACAgUAAxkBAAI",
}
PHOTO_SIZES = ((90, 68), (320, 240), (800, 600))
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")
_BUTTON_URL = re.compile(r"(?:https?|tg)://\S+|t\.me/\S+")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """A Bot API failure (``ok: false``) carrying Telegram's code and description."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def payload(self) -> dict[str, Any]:
        """Return the JSON body Telegram sends for this error."""
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class ControlError(Exception):
    """A control-API failure, answered as ``{"ok": false, "error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad_request(detail: str) -> ApiError:
    """Return a 400 error with Telegram's ``Bad Request:`` prefix."""
    return ApiError(400, f"Bad Request: {detail}")


def too_many_requests(seconds: float) -> ApiError:
    """Return a 429 error whose retry_after is the whole seconds until a retry can succeed."""
    retry_after = max(1, math.ceil(seconds)) if math.isfinite(seconds) else 3600
    return ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


UNAUTHORIZED = ApiError(401, "Unauthorized")
METHOD_NOT_FOUND = ApiError(404, "Not Found: method not found")


# --------------------------------------------------------------------------- parameters


@dataclass
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str | None
    data: bytes


class Params:
    """Typed access to Bot API parameters, whichever transport they came in."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def raw(self, name: str) -> Any:
        """Return the value of ``name``, treating an empty string as absent."""
        value = self.values.get(name)
        return None if value is None or (isinstance(value, str) and value == "") else value

    def get_str(self, name: str) -> str | None:
        """Return ``name`` as a string (numbers are accepted like Telegram does)."""
        value = self.raw(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value).lower() if isinstance(value, bool) else str(value)
        raise bad_request(f"field {name!r} must be a string")

    def get_int(self, name: str) -> int | None:
        """Return ``name`` as an integer, or raise a Bad Request for garbage."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_float(self, name: str) -> float | None:
        """Return ``name`` as a float, or raise a Bad Request for garbage."""
        value = self.raw(name)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        """Return ``name`` as a boolean; absent means False."""
        value = self.raw(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)

    def get_json(self, name: str) -> Any:
        """Return ``name`` decoded from JSON when it arrived as a string (form transports)."""
        value = self.raw(name)
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {name} JSON object") from None

    def get_file(self, name: str) -> Upload | str | None:
        """Return an uploaded file (direct or ``attach://`` reference) or a file_id/URL string."""
        value = self.raw(name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = self.values.get(value.removeprefix("attach://"))
            if not isinstance(value, Upload):
                raise bad_request(f"file {name} must be uploaded as a multipart part")
        if value is None or isinstance(value, Upload | str):
            return value
        raise bad_request(f"wrong type of the {name} field")

    def loggable(self) -> dict[str, Any]:
        """Return the parameters for the event log: JSON decoded, file bytes summarised."""
        logged: dict[str, Any] = {}
        for name, value in self.values.items():
            if isinstance(value, Upload):
                value = {"filename": value.filename, "size": len(value.data)}
            elif isinstance(value, str) and name in JSON_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            logged[name] = value
        return logged


async def read_multipart(reader: MultipartReader) -> dict[str, Any]:
    """Read every part of a multipart body: file parts become :class:`Upload`."""
    values: dict[str, Any] = {}
    while (part := await reader.next()) is not None:
        if isinstance(part, MultipartReader) or part.name is None:
            continue
        if part.filename is not None:
            data = bytes(await part.read(decode=True))
            values[part.name] = Upload(part.filename, part.headers.get(hdrs.CONTENT_TYPE), data)
        else:
            values[part.name] = await part.text()
    return values


async def read_request_params(request: web.Request) -> Params:
    """Collect Bot API parameters from the query string and a JSON, form or multipart body."""
    values: dict[str, Any] = dict(request.query)
    if request.body_exists:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise bad_request("JSON body must be an object")
            values.update(body)
        elif ctype.startswith("multipart/"):
            values.update(await read_multipart(await request.multipart()))
        else:
            values.update((await request.post()).items())
    return Params(values)


# --------------------------------------------------------------------------- reply markup


def _check_callback_data(data: Any) -> None:
    """Reject callback_data that is empty or longer than 64 UTF-8 bytes."""
    if not isinstance(data, str) or not data or len(data.encode()) > CALLBACK_DATA_LIMIT:
        raise bad_request("BUTTON_DATA_INVALID")


def _check_button_url(url: Any) -> None:
    """Reject inline-button URLs Telegram would not open."""
    if not isinstance(url, str) or not _BUTTON_URL.fullmatch(url):
        raise bad_request("BUTTON_URL_INVALID")


INLINE_ACTION_CHECKS: dict[str, Callable[[Any], None]] = {
    "callback_data": _check_callback_data,
    "url": _check_button_url,
}


def _rows(raw: Any, field_name: str) -> list[list[Any]]:
    """Return a keyboard's rows, checking it is an array of arrays."""
    if not isinstance(raw, list) or not all(isinstance(row, list) for row in raw):
        raise bad_request(f'field "{field_name}" of the keyboard must be an Array of Arrays')
    return raw


def _inline_button(button: Any) -> dict[str, Any]:
    """Validate one inline button: non-empty text and exactly one action field."""
    prefix = "can't parse inline keyboard button:"
    if not isinstance(button, dict):
        raise bad_request(f"{prefix} InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str) or not button["text"]:
        raise bad_request(f'{prefix} Field "text" must be a non-empty String')
    actions = [name for name in INLINE_ACTIONS if button.get(name) is not None]
    if not actions:
        raise bad_request(f"{prefix} Text buttons are unallowed in the inline keyboard")
    if len(actions) > 1:
        raise bad_request(f"{prefix} exactly one action field expected, got {', '.join(actions)}")
    check = INLINE_ACTION_CHECKS.get(actions[0])
    if check:
        check(button[actions[0]])
    return {key: value for key, value in button.items() if value is not None}


def _inline_markup(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate an InlineKeyboardMarkup."""
    rows = _rows(raw["inline_keyboard"], "inline_keyboard")
    return {"inline_keyboard": [[_inline_button(button) for button in row] for row in rows]}


def _reply_button(button: Any) -> dict[str, Any]:
    """Validate one reply-keyboard button (a string or a KeyboardButton object)."""
    if isinstance(button, str):
        button = {"text": button}
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request('can\'t parse keyboard button: Field "text" must be a String')
    if not button["text"]:
        raise bad_request("can't parse keyboard button: text must be non-empty")
    requests = [name for name in REPLY_REQUESTS if button.get(name) not in (None, False)]
    if len(requests) > 1:
        raise bad_request(f"can't parse keyboard button: only one of {', '.join(requests)}")
    return {key: value for key, value in button.items() if value not in (None, False)}


def _reply_markup(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a ReplyKeyboardMarkup."""
    rows = _rows(raw["keyboard"], "keyboard")
    markup: dict[str, Any] = {
        "keyboard": [[_reply_button(button) for button in row] for row in rows]
    }
    for option in REPLY_KEYBOARD_OPTIONS:
        if raw.get(option) is not None:
            markup[option] = raw[option]
    placeholder = markup.get("input_field_placeholder")
    if placeholder is not None and len(str(placeholder)) > 64:
        raise bad_request("can't parse reply keyboard markup: input_field_placeholder is too long")
    return markup


def _flag_markup(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Return a validator for ReplyKeyboardRemove / ForceReply (``{name: true}``)."""

    def validate(raw: dict[str, Any]) -> dict[str, Any]:
        if raw.get(name) is not True:
            raise bad_request(f'field "{name}" must be true')
        return {key: value for key, value in raw.items() if value is not None}

    return validate


MARKUP_VALIDATORS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "inline_keyboard": _inline_markup,
    "keyboard": _reply_markup,
    "remove_keyboard": _flag_markup("remove_keyboard"),
    "force_reply": _flag_markup("force_reply"),
}


def normalize_markup(raw: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
    """Validate any reply_markup object and return it in canonical form."""
    if raw is None:
        return None
    if isinstance(raw, dict):
        for key, validate in MARKUP_VALIDATORS.items():
            if key in raw:
                if inline_only and key != "inline_keyboard":
                    raise bad_request("inline keyboard expected")
                return validate(raw)
    raise bad_request("can't parse reply keyboard markup JSON object")


# --------------------------------------------------------------------------- text


def command_entities(text: str) -> list[dict[str, Any]]:
    """Return ``bot_command`` entities for every /command in a user's text."""
    return [
        {"type": "bot_command", "offset": utf16_len(text[: m.start()]), "length": utf16_len(m[0])}
        for m in _COMMAND.finditer(text)
    ]


def _check_entities(raw: Any, text: str) -> list[dict[str, Any]]:
    """Validate an explicit ``entities`` array against the text it formats."""
    total = utf16_len(text)
    if not isinstance(raw, list):
        raise bad_request("can't parse entities: entities must be an Array")
    for entity in raw:
        ok = (
            isinstance(entity, dict)
            and isinstance(entity.get("type"), str)
            and isinstance(entity.get("offset"), int)
            and isinstance(entity.get("length"), int)
            and 0 <= entity["offset"]
            and 0 < entity["length"]
            and entity["offset"] + entity["length"] <= total
        )
        if not ok:
            raise bad_request(f"can't parse entities: invalid entity {entity!r}")
    return raw


PARSE_MODES: dict[str, Callable[[str], tuple[str, list[dict[str, Any]]]]] = {"html": parse_html}


@dataclass
class Formatted:
    """Text after parse_mode processing, with what the control API reports about it."""

    text: str
    entities: list[dict[str, Any]]
    html: str | None
    parse_mode: str | None


def format_text(params: Params, text_field: str, entities_field: str) -> Formatted:
    """Apply parse_mode (or explicit entities) to a text/caption parameter, like Telegram."""
    raw = params.get_str(text_field) or ""
    parse_mode = params.get_str("parse_mode")
    explicit = params.get_json(entities_field)
    if explicit is not None:
        text, entities, html = raw, _check_entities(explicit, raw), None
    elif parse_mode:
        parser = PARSE_MODES.get(parse_mode.lower())
        if parser is None:
            raise bad_request(
                f"unsupported parse_mode {parse_mode!r} (the emulator implements HTML)"
            )
        try:
            text, entities = parser(raw)
        except ParseError as exc:
            raise bad_request(f"can't parse entities: {exc}") from None
        html = raw
    else:
        text, entities, html = raw, [], None
    text, entities = strip_text(text, entities)
    return Formatted(text, entities, html, parse_mode)


# --------------------------------------------------------------------------- rate limits


@dataclass
class TokenBucket:
    """Token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; return 0 on success, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def give_back(self) -> None:
        """Return a token taken for a request that was refused elsewhere."""
        self.tokens = min(self.burst, self.tokens + 1)


@dataclass
class RateLimits:
    """Rate-limit settings; a ``None`` rate switches that limit off."""

    enabled: bool = True
    global_rate: float | None = 30.0
    global_burst: float = 30.0
    per_chat_rate: float | None = 3.0
    per_chat_burst: float = 50.0


class RateLimiter:
    """Per-chat and global token buckets for message-sending methods."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.limits = limits
        self.configure()

    def configure(self, **changes: Any) -> RateLimits:
        """Apply setting changes and start every bucket full again."""
        for name, value in changes.items():
            if not hasattr(self.limits, name):
                raise ValueError(f"unknown rate-limit setting {name!r}")
            setattr(self.limits, name, value)
        for name in ("global_rate", "per_chat_rate"):
            rate = getattr(self.limits, name)
            if rate is not None and rate <= 0:
                raise ValueError(f"{name} must be positive or null")
        self._global = self._new_bucket(self.limits.global_rate, self.limits.global_burst)
        self._chats: dict[int, TokenBucket] = {}
        return self.limits

    def _new_bucket(self, rate: float | None, burst: float) -> TokenBucket | None:
        """Return a full bucket, or None when the rate is switched off."""
        if rate is None:
            return None
        return TokenBucket(rate, burst, burst, self.clock())

    def acquire(self, chat_id: int, *, count_global: bool) -> None:
        """Spend a token for ``chat_id`` (and globally) or raise a 429 ApiError."""
        if not self.limits.enabled:
            return
        now = self.clock()
        chat = self._chats.get(chat_id)
        if chat is None and self.limits.per_chat_rate is not None:
            chat = self._chats[chat_id] = self._new_bucket(
                self.limits.per_chat_rate, self.limits.per_chat_burst
            )
        wait = chat.take(now) if chat else 0.0
        if wait:
            raise too_many_requests(wait)
        if count_global and self._global is not None:
            wait = self._global.take(now)
            if wait:
                if chat:
                    chat.give_back()
                raise too_many_requests(wait)


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A fault-injection rule: fail and/or delay the matching Bot API calls."""

    status: int | None = None
    retry_after: int = 1
    description: str | None = None
    delay: float = 0.0
    remaining: int | None = None
    until: float | None = None
    methods: frozenset[str] | None = None

    def applies_to(self, method: str) -> bool:
        """Say whether the rule covers ``method`` (default: every method but getUpdates)."""
        if self.methods is None:
            return method != "getupdates"
        return method in self.methods

    def expired(self, now: float) -> bool:
        """Say whether the rule has used up its count or its time window."""
        return (self.remaining is not None and self.remaining <= 0) or (
            self.until is not None and now >= self.until
        )

    def error(self) -> ApiError | None:
        """Return the error this rule injects, if it injects one."""
        if self.status is None:
            return None
        if self.status == 429:
            return too_many_requests(self.retry_after)
        text = self.description or HTTPStatus(self.status).phrase
        return ApiError(self.status, text)

    def view(self) -> dict[str, Any]:
        """Return the rule as JSON for the control API."""
        data = asdict(self)
        data["methods"] = sorted(self.methods) if self.methods is not None else None
        return data


class FaultInjector:
    """Holds fault rules and hands out the one that applies to each call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rules: list[Fault] = []

    def add(self, spec: dict[str, Any]) -> Fault:
        """Add a rule from a control-API spec (status, count, seconds, delay, methods, ...)."""
        status = spec.get("status")
        delay = float(spec.get("delay") or 0)
        if status is None and not delay:
            raise ValueError("a fault needs a status and/or a delay")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("status must be an HTTP error status 400-599")
        count, seconds = spec.get("count"), spec.get("seconds")
        if count is None and seconds is None:
            count = 1
        methods = spec.get("methods")
        fault = Fault(
            status=status,
            retry_after=int(spec.get("retry_after") or 1),
            description=spec.get("description"),
            delay=delay,
            remaining=int(count) if count is not None else None,
            until=self.clock() + float(seconds) if seconds is not None else None,
            methods=frozenset(m.lower() for m in methods) if methods is not None else None,
        )
        self.rules.append(fault)
        return fault

    def active(self) -> list[Fault]:
        """Drop used-up and timed-out rules and return the remaining ones."""
        now = self.clock()
        self.rules = [rule for rule in self.rules if not rule.expired(now)]
        return self.rules

    def take(self, method: str) -> Fault | None:
        """Return (and count) the first live rule matching ``method``."""
        for rule in self.active():
            if rule.applies_to(method.lower()):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None


# --------------------------------------------------------------------------- state


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


@dataclass(frozen=True)
class MethodSpec:
    """A Bot API method name and the function implementing it."""

    name: str
    handler: Callable[[Call], Any]
    sends: bool = False  # posts a new message into a chat (counted per chat in stats)


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


def _maybe_int(value: Any) -> int | None:
    """Return ``value`` as an int when it is one, else None."""
    try:
        return int(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


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


# --------------------------------------------------------------------------- the emulator


class BotApiEmulator:
    """A fake Telegram Bot API server for exactly one bot, with a control API."""

    def __init__(
        self,
        token: str,
        bot_username: str = "bansos_test_bot",
        *,
        bot_first_name: str = BOT_FIRST_NAME,
        rate_limits: bool = True,
        global_rate: float | None = 30.0,
        global_burst: float = 30.0,
        per_chat_rate: float | None = 3.0,
        per_chat_burst: float = 50.0,
        max_long_poll: float = 50.0,
        event_log: bool = True,
        webhook_timeout: float = 10.0,
    ) -> None:
        bot_id, sep, secret = token.partition(":")
        if not (bot_id.isdigit() and sep and secret):
            raise ValueError("token must look like '123456:ABC-DEF...'")
        self.token = token
        self.bot_id = int(bot_id)
        self.bot_username = bot_username
        self.bot_first_name = bot_first_name
        self.max_long_poll = max_long_poll
        # The per-call event log (GET /control/events) costs CPU per call; a benchmark
        # that reads only /control/stats switches it off.
        self.event_log = event_log
        self.webhook_timeout = webhook_timeout
        self.limiter = RateLimiter(
            RateLimits(rate_limits, global_rate, global_burst, per_chat_rate, per_chat_burst)
        )
        self.faults = FaultInjector()
        self.stats = CallStats()
        self.base_url: str | None = None
        self._signal = ChangeSignal()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._webhook_tasks: set[asyncio.Task[None]] = set()
        self._methods = {spec.name.lower(): spec for spec in self._method_specs()}
        self._user_content = self._user_content_builders()
        self._listeners: list[tuple[asyncio.Queue[dict[str, Any]], int | None]] = []
        self._reset_state()
        self.app = self._build_app()

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (an ephemeral port when 0) and return the base URL."""
        self._closing = False
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.base_url = f"http://{url_host}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Wake long polls, stop webhook delivery and shut the server down."""
        self._closing = True
        self._signal.notify()
        self._stop_webhook()
        if self._webhook_tasks:
            await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiEmulator:
        """Start on an ephemeral port."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the server."""
        await self.stop()

    def _reset_state(self) -> None:
        """Forget users, chats, updates, files, commands, events and the webhook."""
        if getattr(self, "_webhook", None) is not None:
            self._stop_webhook()
        self._users: dict[int, UserRecord] = {}
        self._chats: dict[int, ChatRecord] = {}
        self._files: dict[str, FileRecord] = {}
        self._file_paths: dict[str, FileRecord] = {}
        self._callbacks: dict[str, CallbackRecord] = {}
        self._commands: dict[tuple[str, str], dict[str, Any]] = {}
        self._queue: list[QueuedUpdate] = []
        self._issued: set[int] = set()
        self._next_update_id = 1
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENT_LOG_SIZE)
        self._seq = 0
        self._webhook: Webhook | None = None
        self.limiter.configure()
        self.faults.rules.clear()
        self.stats.reset()
        self._signal.notify()
        self._publish({"type": "reset"})

    def _next_seq(self) -> int:
        """Return the next value of the global change/event sequence."""
        self._seq += 1
        return self._seq

    # ----------------------------------------------------------------- listeners

    def subscribe(self, chat_id: int | None = None) -> asyncio.Queue[dict[str, Any]]:
        """Return a queue that receives chat events as they happen (one chat, or all).

        Events are dicts with a ``type``: ``message`` (a message was sent, edited or
        deleted, by the bot or the user: ``chat_id``, ``message`` as in the chat view,
        the chat's current ``reply_keyboard``), ``callback_answer`` (``chat_id``,
        ``answer``), ``commands`` (setMyCommands/deleteMyCommands) and ``reset``; each
        carries the ``seq`` of the change. The queue is unbounded: call
        :meth:`unsubscribe` when done.
        """
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.append((queue, chat_id))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding a queue returned by :meth:`subscribe`."""
        self._listeners = [entry for entry in self._listeners if entry[0] is not queue]

    def _publish(self, event: dict[str, Any], chat_id: int | None = None) -> None:
        """Hand an event to the listeners of ``chat_id`` (None: to every listener)."""
        event = {**event, "seq": self._seq}
        for queue, wanted in self._listeners:
            if chat_id is None or wanted is None or wanted == chat_id:
                queue.put_nowait(event)

    def _publish_message(self, chat: ChatRecord, msg: StoredMessage) -> None:
        """Tell listeners a message of ``chat`` appeared or changed."""
        if self._listeners:
            event = {
                "type": "message",
                "chat_id": chat.user.id,
                "message": self._message_view(msg),
                "reply_keyboard": chat.reply_keyboard,
            }
            self._publish(event, chat.user.id)

    def _build_app(self) -> web.Application:
        """Create the aiohttp application with the Bot API and control routes."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        for method, path, handler in self._control_routes():
            app.router.add_route(method, path, self._control(handler))
        return app

    # ----------------------------------------------------------------- Bot API transport

    async def _handle_api(self, request: web.Request) -> web.Response:
        """Serve ``/bot{token}/{method}``."""
        if request.match_info["token"] != self.token:
            return web.json_response(UNAUTHORIZED.payload(), status=401)
        try:
            params = await read_request_params(request)
        except ApiError as exc:
            return web.json_response(exc.payload(), status=exc.error_code)
        status, body = await self.call(request.match_info["method"], params)
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        """Serve ``/file/bot{token}/{file_path}`` downloads."""
        if request.match_info["token"] != self.token:
            return web.json_response(UNAUTHORIZED.payload(), status=401)
        record = self._file_paths.get(request.match_info["path"])
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
            call.chat_id if call.chat_id is not None else _maybe_int(call.params.raw("chat_id"))
        )
        self._events.append(
            {
                "seq": self._next_seq(),
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

    def bot_user(self) -> dict[str, Any]:
        """Return the bot's ``User`` object as it appears in messages."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_first_name,
            "username": self.bot_username,
        }

    def _find_chat(self, raw: Any) -> ChatRecord:
        """Return the private chat named by a chat_id value or raise "chat not found"."""
        if raw is None:
            raise bad_request("chat_id is empty")
        chat = self._chats.get(_maybe_int(raw) or 0)
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

    def _api_message(self, msg: StoredMessage) -> dict[str, Any]:
        """Return the Bot API ``Message`` object for a stored message."""
        user = self._chats[msg.chat_id].user
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

    def _store_message(
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
            seq=self._next_seq(),
            html=formatted.html if formatted else None,
            parse_mode=formatted.parse_mode if formatted else None,
            markup=markup,
        )
        chat.messages[msg.message_id] = msg
        return msg

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
        msg = self._store_message(
            chat, kind, content, from_bot=True, formatted=formatted, markup=markup
        )
        if markup and "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup and "remove_keyboard" in markup:
            chat.reply_keyboard = None
        call.message_id = msg.message_id
        self._publish_message(chat, msg)
        return self._api_message(msg)

    def _message_text(self, params: Params) -> Formatted:
        """Return a message's formatted text, enforcing emptiness and length limits."""
        formatted = format_text(params, "text", "entities")
        if not formatted.text:
            raise bad_request("message text is empty")
        if utf16_len(formatted.text) > TEXT_LIMIT:
            raise bad_request("message is too long")
        return formatted

    def _caption(self, params: Params) -> tuple[dict[str, Any], Formatted]:
        """Return caption fields of a media message, enforcing the 1024 limit."""
        formatted = format_text(params, "caption", "caption_entities")
        if utf16_len(formatted.text) > CAPTION_LIMIT:
            raise bad_request("message caption is too long")
        fields: dict[str, Any] = {}
        if formatted.text:
            fields["caption"] = formatted.text
        if formatted.entities:
            fields["caption_entities"] = formatted.entities
        return fields, formatted

    def _coordinates(self, params: Params) -> dict[str, Any]:
        """Return a ``Location`` object from latitude/longitude parameters."""
        latitude, longitude = params.get_float("latitude"), params.get_float("longitude")
        if latitude is None or not -90 <= latitude <= 90:
            raise bad_request("wrong latitude specified")
        if longitude is None or not -180 <= longitude <= 180:
            raise bad_request("wrong longitude specified")
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        for name in ("horizontal_accuracy", "live_period", "heading"):
            if params.raw(name) is not None:
                location[name] = params.get_float(name)
        return location

    # ----------------------------------------------------------------- files

    def _store_file(
        self, kind: str, data: bytes, file_name: str | None = None, mime_type: str | None = None
    ) -> FileRecord:
        """Store bytes under a fresh Telegram-looking file_id and file_path."""
        prefix = FILE_ID_PREFIX.get(kind, FILE_ID_PREFIX["document"])
        number = len(self._files) + 1
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
        self._files[record.file_id] = record
        self._file_paths[record.file_path] = record
        return record

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
            return self._store_file(kind, value.data, value.filename, mime)
        if value in self._files:
            return self._files[value]
        if value.startswith(("http://", "https://")):
            file_name = value.rstrip("/").rsplit("/", 1)[-1] or "file"
            return self._store_file(kind, b"", file_name, mimetypes.guess_type(file_name)[0])
        raise bad_request("wrong file identifier/HTTP URL specified")

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Store a photo in the usual three sizes and return the PhotoSize array."""
        sizes = []
        for width, height in PHOTO_SIZES:
            record = self._store_file("photo", data, mime_type="image/jpeg")
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

    # ----------------------------------------------------------------- Bot API methods

    def _get_me(self, call: Call) -> dict[str, Any]:
        """getMe: the bot's own User object with capability flags."""
        return {
            **self.bot_user(),
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        """getUpdates: confirm by offset, then long-poll for pending updates."""
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        params = call.params
        offset = params.get_int("offset") or 0
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        timeout = min(max(params.get_float("timeout") or 0.0, 0.0), self.max_long_poll)
        self._confirm_offset(offset)
        if timeout:
            await self._signal.wait_for(
                lambda: bool(self._queue) or self._closing or self._webhook is not None, timeout
            )
        if self._webhook is not None:
            raise ApiError(409, WEBHOOK_CONFLICT)
        batch = self._queue[:limit]
        for entry in batch:
            entry.delivered = True
        return [copy.deepcopy(entry.update) for entry in batch]

    def _confirm_offset(self, offset: int) -> None:
        """Drop updates confirmed by ``offset`` (replays only once they were delivered)."""
        if offset == 0:
            return
        if offset < 0:
            kept = self._queue[offset:]
        else:
            kept = [
                entry
                for entry in self._queue
                if entry.update_id >= offset or (entry.replay and not entry.delivered)
            ]
        if len(kept) != len(self._queue):
            self._queue = kept
            self._signal.notify()

    def _send_message(self, call: Call) -> dict[str, Any]:
        """sendMessage: text with optional HTML and reply markup."""
        chat = self._target_chat(call)
        formatted = self._message_text(call.params)
        content: dict[str, Any] = {"text": formatted.text}
        if formatted.entities:
            content["entities"] = formatted.entities
        return self._post(call, chat, "text", content, formatted)

    def _send_document(self, call: Call) -> dict[str, Any]:
        """sendDocument: an uploaded file, a known file_id or a URL, with a caption."""
        chat = self._target_chat(call)
        record = self._input_file(call.params, "document", "document")
        caption, formatted = self._caption(call.params)
        content = {"document": record.api_document(), **caption}
        return self._post(call, chat, "document", content, formatted)

    def _send_photo(self, call: Call) -> dict[str, Any]:
        """sendPhoto: a photo stored in three sizes, with a caption."""
        chat = self._target_chat(call)
        record = self._input_file(call.params, "photo", "photo")
        caption, formatted = self._caption(call.params)
        content = {"photo": self._photo_sizes(record.data), **caption}
        return self._post(call, chat, "photo", content, formatted)

    def _send_location(self, call: Call) -> dict[str, Any]:
        """sendLocation: a map point."""
        chat = self._target_chat(call)
        location = self._coordinates(call.params)
        return self._post(call, chat, "location", {"location": location})

    def _send_venue(self, call: Call) -> dict[str, Any]:
        """sendVenue: a named place; the message carries both venue and location."""
        chat = self._target_chat(call)
        params = call.params
        location = self._coordinates(params)
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
            caption, formatted = self._caption(call.params)
            content.update(caption)
        message = self._post(call, chat, source.kind, content, formatted)
        return {"message_id": message["message_id"]}

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
        msg.seq = self._next_seq()
        self._publish_message(chat, msg)
        return self._api_message(msg)

    def _edit_message_text(self, call: Call) -> dict[str, Any]:
        """editMessageText: new text; the inline keyboard is replaced (or removed)."""
        chat, msg = self._editable(call)
        if "text" not in msg.content:
            raise bad_request("there is no text in the message to edit")
        formatted = self._message_text(call.params)
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
        caption, formatted = self._caption(call.params)
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
        msg.seq = self._next_seq()
        self._publish_message(chat, msg)
        return True

    def _answer_callback_query(self, call: Call) -> bool:
        """answerCallbackQuery: record the answer once, within 15 minutes."""
        params = call.params
        query_id = params.get_str("callback_query_id") or ""
        query = self._callbacks.get(query_id)
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
            "seq": self._next_seq(),
        }
        self._chats[query.chat_id].callback_answers.append(answer)
        self._publish(
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
        commands = call.params.get_json("commands")
        if not isinstance(commands, list) or len(commands) > MAX_COMMANDS:
            raise bad_request("commands must be an Array of at most 100 BotCommand")
        cleaned = [self._check_command(command) for command in commands]
        if cleaned:
            self._commands[key] = {"scope": scope, "language_code": language, "commands": cleaned}
        else:
            self._commands.pop(key, None)
        self._publish({"type": "commands"})
        return True

    @staticmethod
    def _check_command(command: Any) -> dict[str, str]:
        """Validate one BotCommand."""
        if not isinstance(command, dict) or not _BOT_COMMAND.fullmatch(
            str(command.get("command", ""))
        ):
            raise bad_request("BOT_COMMAND_INVALID")
        description = command.get("description")
        if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        return {"command": command["command"], "description": description}

    def _get_my_commands(self, call: Call) -> list[dict[str, str]]:
        """getMyCommands: the list stored for exactly this scope and language."""
        key, _, _ = self._command_key(call.params)
        return copy.deepcopy(self._commands.get(key, {}).get("commands", []))

    def _delete_my_commands(self, call: Call) -> bool:
        """deleteMyCommands: forget the list of this scope and language."""
        key, _, _ = self._command_key(call.params)
        self._commands.pop(key, None)
        self._publish({"type": "commands"})
        return True

    def _set_webhook(self, call: Call) -> bool:
        """setWebhook: switch to push delivery (an empty url removes the webhook)."""
        params = call.params
        url = params.get_str("url") or ""
        if not url:
            return self._delete_webhook(call)
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get_str("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise bad_request("secret token contains unallowed characters")
        self._stop_webhook()
        if params.get_bool("drop_pending_updates"):
            self._drop_pending()
        allowed = params.get_json("allowed_updates")
        hook = Webhook(url, secret, params.get_int("max_connections") or 40, allowed)
        self._webhook = hook
        hook.task = asyncio.get_running_loop().create_task(self._webhook_loop(hook))
        self._webhook_tasks.add(hook.task)
        hook.task.add_done_callback(self._webhook_tasks.discard)
        self._signal.notify()
        return True

    def _delete_webhook(self, call: Call) -> bool:
        """deleteWebhook: back to getUpdates, optionally dropping pending updates."""
        self._stop_webhook()
        if call.params.get_bool("drop_pending_updates"):
            self._drop_pending()
        return True

    def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        """getWebhookInfo: url, pending count and the last delivery error."""
        info: dict[str, Any] = {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        hook = self._webhook
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
        record = self._files.get(call.params.get_str("file_id") or "")
        if record is None:
            raise bad_request("invalid file_id")
        return record.api_file()

    # ----------------------------------------------------------------- updates & webhook

    def _enqueue(self, payload: dict[str, Any], update_id: int | None = None) -> int:
        """Queue an update (a re-used id is delivered once more) and wake the consumers."""
        replay = update_id is not None and update_id < self._next_update_id
        if update_id is None:
            update_id = self._next_update_id
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._queue.append(QueuedUpdate({"update_id": update_id, **payload}, replay=replay))
        self._issued.add(update_id)
        self._signal.notify()
        return update_id

    def _is_confirmed(self, update_id: int) -> bool:
        """Say whether no copy of ``update_id`` is still waiting for confirmation."""
        return all(entry.update_id != update_id for entry in self._queue)

    def _drop_pending(self) -> None:
        """Forget every pending update (drop_pending_updates)."""
        self._queue = []
        self._signal.notify()

    def _stop_webhook(self) -> None:
        """Remove the webhook and cancel its delivery task."""
        hook, self._webhook = self._webhook, None
        if hook is not None and hook.task is not None and hook.task is not asyncio.current_task():
            hook.task.cancel()
        self._signal.notify()

    def _http_session(self) -> aiohttp.ClientSession:
        """Return the client session used for webhook deliveries."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.webhook_timeout)
            )
        return self._http

    async def _webhook_loop(self, hook: Webhook) -> None:
        """Deliver queued updates to the webhook one at a time, in order, retrying failures."""
        backoff = WEBHOOK_BACKOFF[0]
        while True:
            await self._signal.wait_for(
                lambda: bool(self._queue) or self._webhook is not hook or self._closing, None
            )
            if self._webhook is not hook or self._closing:
                return
            entry = self._queue[0]
            error = await self._deliver(hook, entry)
            if error is None:
                self._queue = [queued for queued in self._queue if queued is not entry]
                self._signal.notify()
                backoff = WEBHOOK_BACKOFF[0]
                continue
            hook.last_error_date = int(time.time())
            hook.last_error_message = error
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WEBHOOK_BACKOFF[1])

    async def _deliver(self, hook: Webhook, entry: QueuedUpdate) -> str | None:
        """POST one update to the webhook and run a method returned in the reply."""
        headers = {hdrs.CONTENT_TYPE: "application/json"}
        if hook.secret_token:
            headers[SECRET_HEADER] = hook.secret_token
        entry.delivered = True
        try:
            async with self._http_session().post(
                hook.url, data=json.dumps(entry.update), headers=headers
            ) as response:
                if not 200 <= response.status < 300:
                    return f"Wrong response from the webhook: {response.status} {response.reason}"
                reply = await self._webhook_reply(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"Connection failed: {exc.__class__.__name__}: {exc}"
        if reply is not None:
            await self.call(*reply)
        return None

    @staticmethod
    async def _webhook_reply(response: aiohttp.ClientResponse) -> tuple[str, Params] | None:
        """Return the Bot API call a webhook answered with (JSON or multipart), if any."""
        if response.content_type == "application/json":
            try:
                values = await response.json()
            except ValueError:
                return None
        elif response.content_type.startswith("multipart/"):
            values = await read_multipart(MultipartReader(response.headers, response.content))
        else:
            return None
        if not isinstance(values, dict) or not isinstance(values.get("method"), str):
            return None
        method = values.pop("method")
        return method, Params(values)

    # ----------------------------------------------------------------- simulated users

    def _user_content_builders(
        self,
    ) -> dict[str, Callable[[UserRecord, Any], tuple[str, dict[str, Any]]]]:
        """Return the builders for each kind of message a simulated user can send."""
        return {
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
        record = self._store_file("sticker", b"RIFF\x00\x00\x00\x00WEBPVP8 ", None, "image/webp")
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
        return "photo", self._with_caption({"photo": self._photo_sizes(data)}, spec)

    def _user_document(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A document; its bytes can be given for bots that download it."""
        spec = spec if isinstance(spec, dict) else {}
        file_name = str(spec.get("file_name") or "document.pdf")
        mime = spec.get("mime_type") or mimetypes.guess_type(file_name)[0]
        data = self._user_file_bytes(spec, f"emulator placeholder for {file_name}\n".encode())
        record = self._store_file("document", data, file_name, mime or "application/octet-stream")
        return "document", self._with_caption({"document": record.api_document()}, spec)

    def _user_voice(self, user: UserRecord, spec: Any) -> tuple[str, dict[str, Any]]:
        """A voice note (OGG/Opus)."""
        spec = spec if isinstance(spec, dict) else {}
        record = self._store_file("voice", b"OggS emulator voice", None, "audio/ogg")
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
        record = self._store_file("video", b"\x00\x00\x00\x18ftypmp42", "video.mp4", "video/mp4")
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

    def _upsert_user(self, spec: dict[str, Any]) -> UserRecord:
        """Create or update a user and their private chat."""
        user_id = _maybe_int(spec.get("id"))
        if user_id is None or user_id <= 0 or not spec.get("first_name"):
            raise ControlError(400, "a user needs a positive integer id and a first_name")
        user = self._users.get(user_id)
        if user is None:
            user = self._users[user_id] = UserRecord(user_id, str(spec["first_name"]))
            self._chats[user_id] = ChatRecord(user, chat_instance=str(secrets.randbits(62)))
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
                if _maybe_int(sender.get("id")) not in self._users and sender.get("first_name"):
                    self._upsert_user(sender)

    # ----------------------------------------------------------------- views

    def _message_view(self, msg: StoredMessage) -> dict[str, Any]:
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
            "date": msg.date,
            "seq": msg.seq,
        }

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
                entry = self._commands.get((json.dumps(scope, sort_keys=True), lang))
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
            "messages": [self._message_view(msg) for msg in messages],
            "reply_keyboard": chat.reply_keyboard,
            "commands": self._effective_commands(chat),
            "callback_answers": chat.callback_answers,
            "last_seq": self._seq,
        }

    # ----------------------------------------------------------------- control API

    def _control_routes(self) -> Iterable[tuple[str, str, Callable[..., Awaitable[Any]]]]:
        """Return (HTTP method, path, handler) for every control endpoint."""
        return (
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

    @staticmethod
    def _control(
        handler: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
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
        user = self._users.get(_maybe_int(request.match_info["user_id"]) or 0)
        if user is None:
            raise ControlError(404, "unknown user; create it with POST /control/users first")
        return user, self._chats[user.id]

    async def _c_bot(self, request: web.Request) -> dict[str, Any]:
        """GET /control/bot: the emulated bot's identity."""
        return {"ok": True, "bot": self.bot_user(), "base_url": self.base_url}

    async def _c_upsert_user(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users: create or update a user and their chat."""
        user = self._upsert_user(await self._body(request))
        return {"ok": True, "user": asdict(user)}

    async def _c_bulk_users(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/bulk: create or update many users ({"users": [...]})."""
        users = (await self._body(request)).get("users")
        if not isinstance(users, list):
            raise ControlError(400, "give a list of users")
        for spec in users:
            if not isinstance(spec, dict):
                raise ControlError(400, "each user is an object")
            self._upsert_user(spec)
        return {"ok": True, "count": len(users)}

    async def _c_stats(self, request: web.Request) -> dict[str, Any]:
        """GET /control/stats[?per_chat=1]: call counts by method and status, the span
        between the first and last success per method, sends per chat; DELETE resets."""
        if request.method == "DELETE":
            self.stats.reset()
        return {"ok": True, **self.stats.view(request.query.get("per_chat") == "1")}

    async def _c_user_message(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/messages: the user sends text, a contact, media..."""
        user, chat = self._path_user(request)
        body = await self._body(request)
        kinds = [kind for kind in self._user_content if kind in body]
        if len(kinds) != 1:
            raise ControlError(400, f"give exactly one of {', '.join(self._user_content)}")
        kind, content = self._user_content[kinds[0]](user, body[kinds[0]])
        msg = self._store_message(chat, kind, content, from_bot=False)
        self._publish_message(chat, msg)
        update_id = self._enqueue({"message": self._api_message(msg)})
        return {"ok": True, "update_id": update_id, "message_id": msg.message_id, "seq": msg.seq}

    async def _c_user_edit(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/edits: the user edits one of their text messages."""
        user, chat = self._path_user(request)
        body = await self._body(request)
        msg = chat.messages.get(_maybe_int(body.get("message_id")) or 0)
        if msg is None or msg.from_bot or msg.deleted or msg.kind != "text":
            raise ControlError(404, "no text message of this user with that message_id")
        _, msg.content = self._user_text(user, body.get("text"))
        msg.edit_date = int(time.time())
        msg.seq = self._next_seq()
        self._publish_message(chat, msg)
        update_id = self._enqueue({"edited_message": self._api_message(msg)})
        return {"ok": True, "update_id": update_id, "message_id": msg.message_id, "seq": msg.seq}

    async def _c_user_callback(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/callbacks: the user presses (or forges) an inline button."""
        user, chat = self._path_user(request)
        body = await self._body(request)
        msg = chat.messages.get(_maybe_int(body.get("message_id")) or 0)
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
        self._callbacks[query.id] = query
        callback = {
            "id": query.id,
            "from": user.api_user(),
            "message": self._api_message(msg),
            "chat_instance": chat.chat_instance,
        }
        if data is not None:
            callback["data"] = data
        seq = self._next_seq()
        update_id = self._enqueue({"callback_query": callback})
        return {"ok": True, "update_id": update_id, "callback_query_id": query.id, "seq": seq}

    async def _c_user_block(self, request: web.Request) -> dict[str, Any]:
        """POST /control/users/{id}/block: the user blocks or unblocks the bot."""
        user, _ = self._path_user(request)
        user.blocked = bool((await self._body(request)).get("blocked", True))
        return {"ok": True, "blocked": user.blocked}

    async def _c_inject(self, request: web.Request) -> dict[str, Any]:
        """POST /control/updates: queue a raw update (a given update_id is used as-is)."""
        update = (await self._body(request)).get("update")
        if not isinstance(update, dict):
            raise ControlError(400, 'give {"update": {...}}')
        update = dict(update)
        update_id = update.pop("update_id", None)
        if update_id is not None and _maybe_int(update_id) is None:
            raise ControlError(400, "update_id must be an integer")
        self._learn_users(update)
        seq = self._next_seq()
        update_id = self._enqueue(update, _maybe_int(update_id))
        return {"ok": True, "update_id": update_id, "seq": seq}

    async def _c_wait(self, request: web.Request) -> dict[str, Any]:
        """GET /control/wait?update_id=N&timeout=T: until the bot confirmed update N."""
        update_id = _maybe_int(request.query.get("update_id"))
        if update_id is None or update_id not in self._issued:
            raise ControlError(404, "unknown update_id")
        try:
            timeout = min(float(request.query.get("timeout", 10)), 300.0)
        except ValueError:
            raise ControlError(400, "timeout must be a number") from None
        confirmed = await self._signal.wait_for(
            lambda: self._is_confirmed(update_id) or self._closing, timeout
        )
        if self._closing:
            raise ControlError(503, "the emulator is shutting down")
        if not confirmed:
            raise ControlError(504, f"update {update_id} was not confirmed within {timeout}s")
        return {"ok": True, "update_id": update_id, "last_seq": self._seq}

    async def _c_chat(self, request: web.Request) -> dict[str, Any]:
        """GET /control/chats/{chat_id}: messages, keyboard, commands, callback answers."""
        chat = self._chats.get(_maybe_int(request.match_info["chat_id"]) or 0)
        if chat is None:
            raise ControlError(404, "unknown chat")
        return self._chat_view(chat)

    async def _c_events(self, request: web.Request) -> dict[str, Any]:
        """GET /control/events?since=SEQ&chat_id=ID: the Bot API calls the bot made."""
        since = _maybe_int(request.query.get("since", 0)) or 0
        chat_id = _maybe_int(request.query.get("chat_id"))
        events = [
            event
            for event in self._events
            if event["seq"] > since and (chat_id is None or event["chat_id"] == chat_id)
        ]
        return {"ok": True, "events": events, "last_seq": self._seq}

    async def _c_commands(self, request: web.Request) -> dict[str, Any]:
        """GET /control/commands: everything stored with setMyCommands."""
        return {"ok": True, "commands": list(self._commands.values())}

    async def _c_file(self, request: web.Request) -> web.Response:
        """GET /control/files/{file_id}: the raw bytes of a stored file."""
        record = self._files.get(request.match_info["file_id"])
        if record is None:
            raise ControlError(404, "unknown file_id")
        return web.Response(
            body=record.data, content_type=record.mime_type or "application/octet-stream"
        )

    async def _c_limits(self, request: web.Request) -> dict[str, Any]:
        """GET/POST /control/limits: read or change rate limits (buckets start full)."""
        if request.method == "POST":
            try:
                self.limiter.configure(**await self._body(request))
            except ValueError as exc:
                raise ControlError(400, str(exc)) from None
        return {"ok": True, "limits": asdict(self.limiter.limits)}

    async def _c_faults(self, request: web.Request) -> dict[str, Any]:
        """GET/POST/DELETE /control/faults: list, add (or ``{"clear": true}``) or clear faults."""
        body = await self._body(request) if request.method == "POST" else {}
        if request.method == "DELETE" or body.get("clear"):
            self.faults.rules.clear()
        elif request.method == "POST":
            try:
                self.faults.add(body)
            except (TypeError, ValueError) as exc:
                raise ControlError(400, str(exc)) from None
        return {"ok": True, "faults": [rule.view() for rule in self.faults.active()]}

    async def _c_reset(self, request: web.Request) -> dict[str, Any]:
        """POST /control/reset: forget everything except the bot itself."""
        self._reset_state()
        return {"ok": True}
