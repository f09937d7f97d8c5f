"""Announcements to many people: the broadcast, its language versions, its delivery
chunks (keyset ranges of recipients with a cursor and a lease) and failed deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, BigIntPK, utcnow
from models.enums import Audience, BroadcastStatus, EnumText


class Broadcast(Base):
    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    created_by: Mapped[int] = mapped_column(BigInteger)
    audience: Mapped[Audience] = mapped_column(EnumText(Audience, 16))
    region_prefix: Mapped[str] = mapped_column(String(13), default="")  # "" = national
    language: Mapped[str | None] = mapped_column(String(8))  # None = every language
    source_chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)  # the default version
    # draft is never stored; scheduled -> running -> done, paused, cancelled
    status: Mapped[BroadcastStatus] = mapped_column(EnumText(BroadcastStatus, 16), index=True)
    scheduled_at: Mapped[datetime]
    recipients: Mapped[int] = mapped_column(Integer, default=0)  # counted when confirmed
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_at: Mapped[datetime | None]  # the last progress edit (at most every few s)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    versions: Mapped[list[BroadcastVersion]] = relationship(
        back_populates="broadcast", cascade="all, delete-orphan", lazy="selectin"
    )


class BroadcastVersion(Base):
    """The message people with this language get instead of the default one."""

    __tablename__ = "broadcast_versions"

    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger)

    broadcast: Mapped[Broadcast] = relationship(back_populates="versions")


class BroadcastChunk(Base):
    """Recipients with first_after < telegram_id <= last (no upper bound when last is
    None), delivered in telegram_id order; `cursor` is the last one handled."""

    __tablename__ = "broadcast_chunks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True
    )
    first_after: Mapped[int] = mapped_column(BigInteger)
    last: Mapped[int | None] = mapped_column(BigInteger)
    cursor: Mapped[int] = mapped_column(BigInteger)
    done: Mapped[bool] = mapped_column(default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None]
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    blocked: Mapped[int] = mapped_column(Integer, default=0)


class BroadcastFailure(Base):
    """A delivery that failed for good (after retries), for the report and the audit."""

    __tablename__ = "broadcast_failures"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), index=True
    )
    telegram_id: Mapped[int] = mapped_column(BigInteger)
    error: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
