"""Notices to one person, written in the transaction that caused them and delivered
by the worker (so the CLI, which has no running bot, can tell people too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow


class OutboxNotice(Base):
    __tablename__ = "outbox_notices"
    __table_args__ = (Index("ix_outbox_notices_pending", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    # Codes and numbers only (an e-Warong code, a role): never personal data.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None]  # delivered, or given up on (see `failed`)
    failed: Mapped[str | None] = mapped_column(String(64))
