"""Bounded retries for outgoing Bot API calls (an aiogram request middleware).

A 5xx answer, a malformed answer (a proxy's error page), a network error or a
timeout is retried up to `RETRIES` times with exponential backoff and jitter; a 429
waits the `retry_after` Telegram asked for (when it is at most `MAX_RETRY_AFTER`
seconds). Anything else (400, 403, ...) is the caller's to handle, at once.

Not retried here: `getUpdates` (aiogram's polling loop backs off and retries it
forever by itself), and calls made inside `retries_disabled()`, for callers with
their own policy (the broadcast engine pauses the whole fleet on a 429).

A timed-out `sendMessage` may have reached Telegram, and Telegram has no idempotency
key for it, so a retry can show a message twice; that is preferred to a user never
hearing back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger("bansos.retry")

RETRIES = 3
BASE_DELAY = 0.5  # seconds before the first retry; doubled each time
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 30.0  # a longer 429 wait is raised to the caller
NOT_RETRIED = frozenset({"getUpdates"})

_disabled: ContextVar[bool] = ContextVar("bansos_bot_api_retries_disabled", default=False)


@contextlib.contextmanager
def retries_disabled() -> Iterator[None]:
    """Bot API calls made inside fail at the first error (for callers with their own policy)."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def backoff_delay(attempt: int, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds before retry number `attempt` (0-based): base·2^attempt, capped, ±10%."""
    return min(cap, base * 2**attempt) * random.uniform(0.9, 1.1)


class RetryMiddleware(BaseRequestMiddleware):
    """Register with `bot.session.middleware(RetryMiddleware())`."""

    def __init__(
        self,
        retries: int = RETRIES,
        base_delay: float = BASE_DELAY,
        max_retry_after: float = MAX_RETRY_AFTER,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.retries = retries
        self.base_delay = base_delay
        self.max_retry_after = max_retry_after
        self.sleep = sleep

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        if name in NOT_RETRIED or _disabled.get():
            return await make_request(bot, method)
        attempt = 0
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt >= self.retries or error.retry_after > self.max_retry_after:
                    raise
                delay = float(error.retry_after)
                reason = f"429, retry after {error.retry_after}s"
            except TelegramEntityTooLarge:
                raise
            except (TelegramServerError, TelegramNetworkError, ClientDecodeError) as error:
                if attempt >= self.retries:
                    raise
                delay = backoff_delay(attempt, self.base_delay)
                reason = type(error).__name__
            attempt += 1
            log.warning(
                "Bot API %s failed (%s); retry %d of %d in %.1fs",
                name,
                reason,
                attempt,
                self.retries,
                delay,
            )
            await self.sleep(delay)
