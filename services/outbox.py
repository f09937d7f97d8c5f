"""Notices to one person, queued in the transaction that caused them.

The CLI has no running bot, and a handler's work may still roll back: so a notice
("your account was unlinked", "you are no longer an agent of …") is a row written
with the change itself, and the worker delivers it afterwards (`tg.notify.outbox`).
Parameters are codes and numbers, never personal data; the text is rendered in the
recipient's language when it is sent.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import OutboxNotice

MAX_ATTEMPTS = 5


class NoticeKind(StrEnum):
    LINK_ATTEMPT = "link_attempt"  # someone tried to link this family to another account
    UNLINKED = "unlinked"  # an operator unlinked the account from its family
    ROLE_REMOVED = "role_removed"  # params: role, scope
    EWARONG_DEACTIVATED = "ewarong_deactivated"  # params: code
    PARTNER_DEACTIVATED = "partner_deactivated"  # params: code
    DISPUTE_REVERSED = "dispute_reversed"  # params: id, amount (the money is back)
    DISPUTE_DISMISSED = "dispute_dismissed"  # params: id (found genuine)


async def enqueue(
    session: AsyncSession, telegram_id: int, kind: NoticeKind, now: datetime, **params: Any
) -> None:
    session.add(OutboxNotice(telegram_id=telegram_id, kind=kind, params=params, created_at=now))


async def take_pending(session: AsyncSession, limit: int) -> list[OutboxNotice]:
    """The oldest undelivered notices, locked for this transaction (other workers skip
    them on PostgreSQL; SQLite has a single writer anyway)."""
    return list(
        await session.scalars(
            select(OutboxNotice)
            .where(OutboxNotice.sent_at.is_(None))
            .order_by(OutboxNotice.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )


async def mark_sent(session: AsyncSession, notice: OutboxNotice, now: datetime) -> None:
    notice.sent_at = now
    notice.attempts += 1


async def mark_failed(
    session: AsyncSession, notice: OutboxNotice, now: datetime, reason: str, *, final: bool
) -> None:
    """A failed send: tried again later, or given up (blocked bot, unknown chat, too many
    attempts) with the reason kept."""
    notice.attempts += 1
    if final or notice.attempts >= MAX_ATTEMPTS:
        notice.sent_at = now
        notice.failed = reason[:64]


async def drop_for(session: AsyncSession, telegram_id: int, now: datetime) -> None:
    """Forget undelivered notices to an account that erased itself."""
    await session.execute(
        update(OutboxNotice)
        .where(OutboxNotice.telegram_id == telegram_id, OutboxNotice.sent_at.is_(None))
        .values(sent_at=now, failed="erased")
    )
