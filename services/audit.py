"""Writing the audit trail. Callers pass identifiers and codes, never personal data."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import AuditEvent

log = logging.getLogger("bansos.audit")


async def record(
    session: AsyncSession,
    action: str,
    *,
    actor: int | None = None,
    subject_type: str | None = None,
    subject_id: object = None,
    **details: Any,
) -> None:
    """Add an audit event to the current transaction (it lands only if the work commits)."""
    session.add(
        AuditEvent(
            actor_telegram_id=actor,
            action=action,
            subject_type=subject_type,
            subject_id=None if subject_id is None else str(subject_id),
            details=details,
        )
    )
    # The log names the event, not who did it: the actor of a Napza request is the
    # person asking for help. The audit row itself keeps the actor.
    log.info("audit %s %s=%s", action, subject_type, subject_id)


async def record_fast(
    session: AsyncSession,
    action: str,
    *,
    actor: int | None,
    subject_type: str,
    subject_id: object,
    now: datetime,
    **details: Any,
) -> None:
    """The same event as `record`, written at once with one INSERT (for hot paths)."""
    await session.execute(
        insert(AuditEvent.__table__).values(
            created_at=now,
            actor_telegram_id=actor,
            action=action,
            subject_type=subject_type,
            subject_id=str(subject_id),
            details=details,
        )
    )


async def recent(
    session: AsyncSession, *, limit: int = 50, action_prefix: str | None = None
) -> list[AuditEvent]:
    """The newest audit events, newest first (optionally only actions starting with a prefix)."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action_prefix:
        statement = statement.where(AuditEvent.action.startswith(action_prefix))
    return list(await session.scalars(statement))
