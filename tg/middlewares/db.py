"""The update's transaction: one AsyncSession per update, owned here.

The session is committed once, after the handler (and everything inside this
middleware) returned, and rolled back on any error. Nobody else under `tg/` commits.
A service that must know its work is durable before messages go out (a redemption,
a new help request) commits at its own commit point and returns an outcome; this
middleware then commits whatever came after (usually nothing).

A failed COMMIT propagates to the dispatcher's error handler (`reply_on_failure`),
which tells the user; `data["saved_before_failure"]` tells it whether a service had
already made its work durable, so the user is not told "nothing was changed" then.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("bansos.errors")

COMMITTED = "bansos_committed"  # session.info key: a service committed during the update


def _mark_committed(session: Any) -> None:
    session.info[COMMITTED] = True


def committed_early(session: AsyncSession | None) -> bool:
    """Whether a service committed during this update (its work is saved)."""
    return session is not None and session.info.get(COMMITTED, False)


class DbSessionMiddleware(BaseMiddleware):
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        async with self.sessionmaker() as session:
            sa_event.listen(session.sync_session, "after_commit", _mark_committed)
            data["session"] = session
            try:
                result = await handler(event, data)
                await session.commit()
            except BaseException:
                data["saved_before_failure"] = committed_early(session)
                await rollback(session)
                raise
            return result


async def rollback(session: AsyncSession) -> None:
    """Roll back, quietly when the connection is gone (the server rolls back itself)."""
    try:
        await session.rollback()
    except Exception as error:
        log.warning("rollback failed: %s", type(error).__name__)
