"""The last safety net: a failed update is logged (no personal data) and the user is told.

Two places catch failures:

- `ErrorReplyMiddleware` wraps the handler (once the account and locale are known).
  It rolls the update's work back (so the session middleware commits nothing of a
  failed handler) and tells the user which happened: nothing was changed (try
  again), or, when a service had already committed its work, that it was saved.
- `reply_on_failure`, a dispatcher error handler, catches what fails outside that:
  aiogram's FSM middleware reading Redis, de-duplication, loading the account, and
  the update's COMMIT itself (`DbSessionMiddleware` owns the transaction).

A lost or hung Redis or database connection (`is_service_fault`) is answered with
"the service is busy, please try again in a moment"; anything else with an apology.
Either way the update counts as handled: polling goes on and a webhook answers 200,
so one bad update or an outage never makes the bot crash-loop, and as soon as Redis
or the database is back the next update works (redis-py reconnects, the engine's
pre-ping replaces dead connections).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import ErrorEvent, TelegramObject, Update, User
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from asyncpg import exceptions as pg_errors
from redis import exceptions as redis_errors
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession

from services import accounts
from tg.middlewares.db import committed_early, rollback

log = logging.getLogger("bansos.errors")

SERVICE_FAULTS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # Redis down or restarting (also BusyLoadingError)
    redis_errors.TimeoutError,  # Redis hung
    redis_errors.LockError,  # a user's update lock not released in time
    ConnectionError,  # the database refused or dropped the connection
    TimeoutError,
    PoolTimeoutError,  # every pooled database connection busy
    pg_errors.PostgresConnectionError,
    pg_errors.OperatorInterventionError,  # PostgreSQL shutting down or starting up
    pg_errors.TooManyConnectionsError,
)


def is_service_fault(error: BaseException) -> bool:
    """Whether `error` is Redis or the database being unreachable (not a bug)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SERVICE_FAULTS):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def failure_text(error: BaseException, fault: bool, *, saved: bool) -> str:
    """What to tell the user about a failed update, in the current locale."""
    if saved:
        return saved_text()
    if fault and not isinstance(error, DBAPIError):
        return busy_text()  # Redis gone: nothing reached the database
    return not_done_text()


def busy_text() -> str:
    return _("The service is busy, please try again in a moment.")


def not_done_text() -> str:
    return _("Sorry, something went wrong on our side. Nothing was changed; please try again.")


def saved_text() -> str:
    return _(
        "Your request was saved, but something went wrong afterwards. "
        "Please check the result before trying again."
    )


class ErrorReplyMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        session: AsyncSession | None = data.get("session")
        try:
            return await handler(event, data)
        except Exception as error:
            assert isinstance(event, Update)
            fault = is_service_fault(error)
            _log_failure(event, error, fault)
            if session is not None:
                await rollback(session)
            text = failure_text(error, fault, saved=committed_early(session))
            await tell(data["bot"], event, text)
            return None


async def reply_on_failure(event: ErrorEvent, bot: Bot, i18n: I18n, **data: Any) -> None:
    """Dispatcher error handler: a failure before the handler ran (nothing was changed)."""
    update = event.update
    fault = is_service_fault(event.exception)
    _log_failure(update, event.exception, fault)
    user: User | None = data.get("event_from_user")
    locale = data.get("locale") or accounts.locale_for(
        None, user.language_code if user else None, i18n.default_locale
    )
    with i18n.context(), i18n.use_locale(locale):
        text = failure_text(event.exception, fault, saved=data.get("saved_before_failure", False))
    await tell(bot, update, text)


def _log_failure(update: Update, error: BaseException, fault: bool) -> None:
    # Engines hide bound parameters, so neither message nor traceback carries user data.
    if fault:  # an outage: one line per update, no traceback flood
        log.warning(
            "update %s (%s): service unavailable: %s: %s",
            update.update_id,
            update.event_type,
            type(error).__name__,
            error,
        )
    else:
        log.error(
            "update %s (%s) failed: %s",
            update.update_id,
            update.event_type,
            type(error).__name__,
            exc_info=error,
        )


async def tell(bot: Bot, event: Update, text: str) -> None:
    """Best effort: an alert for a button press (a message if the handler had answered
    it already), else a message to the user."""
    try:
        if event.callback_query is not None:
            try:
                await event.callback_query.answer(text, show_alert=True)
                return
            except TelegramBadRequest:  # answered before the failure: write instead
                pass
        if user := event.event.from_user if hasattr(event.event, "from_user") else None:
            await bot.send_message(user.id, text)
    except Exception as error:  # the message itself failed (e.g. Telegram down)
        log.warning("could not tell the user about a failure: %s", type(error).__name__)
