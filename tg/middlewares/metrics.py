"""Counts every update by type and times its handling (outermost middleware)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update

from infra import metrics


class MetricsMiddleware(BaseMiddleware):
    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            kind = event.event_type if isinstance(event, Update) else type(event).__name__
        except Exception:  # an update type this aiogram does not know
            kind = "unknown"
        metrics.UPDATES.labels(type=kind).inc()
        started = time.perf_counter()
        try:
            return await handler(event, data)
        except Exception:
            metrics.ERRORS.inc()
            raise
        finally:
            metrics.HANDLER_SECONDS.observe(time.perf_counter() - started)
