"""An in-memory fake of the Telegram Bot API, plus a control API that plays the users.

The Bot API side (``/bot{token}/{method}``, ``/file/bot{token}/{path}``) speaks the
real JSON protocol and enforces Telegram's limits with Telegram's error texts, so
aiogram, python-telegram-bot or any other client can talk to it. The control API
(``/control/...``) lets tests and the browser sandbox act as users (send text,
contacts, locations, button presses), read what the bot did, and switch rate
limits and fault injection. Everything lives in memory on one event loop.

The modules, from the wire inwards:

- ``server``: :class:`BotApiEmulator`, which builds the parts below, serves their
  routes on one aiohttp app, starts, stops and resets;
- ``protocol``: the wire protocol: :class:`ApiError` / :class:`ControlError`,
  ``bad_request`` / ``too_many_requests``, :class:`Params`, :class:`Upload` and
  reading a request's parameters (query, JSON, form, multipart);
- ``validation``: what Telegram accepts: reply markup, entities, callback data,
  button URLs, ``format_text`` / :class:`Formatted` (parse_mode), text, caption and
  location parameters, commands, ``command_entities`` for users' texts;
- ``limits``: :class:`TokenBucket`, :class:`RateLimits`, :class:`RateLimiter`,
  :class:`Fault`, :class:`FaultInjector`;
- ``records``: the dataclasses (users, files, messages, chats, callback queries,
  queued updates, the webhook, calls), :class:`CallStats`, :class:`ChangeSignal`;
- ``state``: :class:`World`, the memory shared by the parts (users, chats, files,
  callback queries, commands, the change sequence, in-process listeners);
- ``updates``: :class:`UpdateQueue` (what getUpdates reads) and
  :class:`WebhookPusher` (push delivery after setWebhook);
- ``bot_api``: :class:`BotApi`, the Bot API methods (sendMessage, editMessageText,
  getUpdates, setWebhook, ...) with the method table (:class:`MethodSpec`), fault
  application and the per-call event log;
- ``users``: :class:`UserSimulator`, the simulated users and what they send;
- ``control``: :class:`ControlApi`, the ``/control/...`` endpoints.
"""

from sandbox.emulator.bot_api import BotApi, MethodSpec
from sandbox.emulator.control import ControlApi
from sandbox.emulator.limits import Fault, FaultInjector, RateLimiter, RateLimits, TokenBucket
from sandbox.emulator.protocol import (
    ApiError,
    ControlError,
    Params,
    Upload,
    bad_request,
    read_multipart,
    read_request_params,
    too_many_requests,
)
from sandbox.emulator.records import (
    Call,
    CallbackRecord,
    CallStats,
    ChangeSignal,
    ChatRecord,
    FileRecord,
    QueuedUpdate,
    StoredMessage,
    UserRecord,
    Webhook,
)
from sandbox.emulator.server import BOT_FIRST_NAME, BotApiEmulator
from sandbox.emulator.state import World
from sandbox.emulator.updates import SECRET_HEADER, UpdateQueue, WebhookPusher
from sandbox.emulator.users import UserSimulator
from sandbox.emulator.validation import (
    Formatted,
    command_entities,
    format_text,
    normalize_markup,
)

__all__ = [
    "BOT_FIRST_NAME",
    "SECRET_HEADER",
    "ApiError",
    "BotApi",
    "BotApiEmulator",
    "Call",
    "CallStats",
    "CallbackRecord",
    "ChangeSignal",
    "ChatRecord",
    "ControlApi",
    "ControlError",
    "Fault",
    "FaultInjector",
    "FileRecord",
    "Formatted",
    "MethodSpec",
    "Params",
    "QueuedUpdate",
    "RateLimiter",
    "RateLimits",
    "StoredMessage",
    "TokenBucket",
    "UpdateQueue",
    "Upload",
    "UserRecord",
    "UserSimulator",
    "Webhook",
    "WebhookPusher",
    "World",
    "bad_request",
    "command_entities",
    "format_text",
    "normalize_markup",
    "read_multipart",
    "read_request_params",
    "too_many_requests",
]
