"""What Telegram accepts: reply markup, entities, texts and captions, commands.

Each check raises a Bad Request :class:`~sandbox.emulator.protocol.ApiError` with
Telegram's own wording. :func:`normalize_markup` validates any ``reply_markup``;
:func:`format_text` applies ``parse_mode`` (HTML) or explicit entities;
:func:`message_text`, :func:`caption_fields` and :func:`coordinates` read the
parameters of the send and edit methods within Telegram's limits;
:func:`command_entities` marks the /commands in a simulated user's text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.emulator.protocol import Params, bad_request
from sandbox.html import ParseError, parse_html, strip_text, utf16_len

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64
MAX_COMMANDS = 100
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
_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")
_BUTTON_URL = re.compile(r"(?:https?|tg)://\S+|t\.me/\S+")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BOT_COMMAND = re.compile(r"[a-z0-9_]{1,32}")


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


def message_text(params: Params) -> Formatted:
    """Return a message's formatted text, enforcing emptiness and length limits."""
    formatted = format_text(params, "text", "entities")
    if not formatted.text:
        raise bad_request("message text is empty")
    if utf16_len(formatted.text) > TEXT_LIMIT:
        raise bad_request("message is too long")
    return formatted


def caption_fields(params: Params) -> tuple[dict[str, Any], Formatted]:
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


# --------------------------------------------------------------------------- other parameters


def coordinates(params: Params) -> dict[str, Any]:
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


def check_commands(commands: Any) -> list[dict[str, str]]:
    """Validate a setMyCommands ``commands`` array and return it cleaned."""
    if not isinstance(commands, list) or len(commands) > MAX_COMMANDS:
        raise bad_request("commands must be an Array of at most 100 BotCommand")
    return [_check_command(command) for command in commands]


def _check_command(command: Any) -> dict[str, str]:
    """Validate one BotCommand."""
    if not isinstance(command, dict) or not _BOT_COMMAND.fullmatch(str(command.get("command", ""))):
        raise bad_request("BOT_COMMAND_INVALID")
    description = command.get("description")
    if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
        raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    return {"command": command["command"], "description": description}


def check_secret_token(secret: str | None) -> None:
    """Reject a setWebhook secret_token with characters Telegram does not allow."""
    if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")


# Emoji a bot may react with (ReactionTypeEmoji in the Bot API; a subset of its list).
REACTION_EMOJI = frozenset(("👍", "👎", "❤", "🔥", "🙏", "👌", "👀", "🤝", "✍", "🆒", "😊", "👏"))
