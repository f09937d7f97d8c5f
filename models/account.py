"""Telegram accounts that use the bot, their roles, and their link to a beneficiary."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, BigIntPK, utcnow
from models.enums import EnumText, Role


class Account(Base):
    __tablename__ = "accounts"

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    locale: Mapped[str | None] = mapped_column(String(8))  # chosen with /bahasa
    language_code: Mapped[str | None] = mapped_column(String(16))  # Telegram's, last seen
    beneficiary_id: Mapped[int | None] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="SET NULL"), unique=True
    )
    linked_at: Mapped[datetime | None]
    # Announcements: the user left them with /berhenti (receipts and replies still come).
    broadcasts_off: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Telegram answered 403 to a message: the user blocked the bot.
    blocked_bot_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    roles: Mapped[list[AccountRole]] = relationship(
        back_populates="account", cascade="all, delete-orphan", lazy="selectin"
    )


class AccountRole(Base):
    """A role beyond KPM: admin (scope = region prefix or None for national), agent, partner."""

    __tablename__ = "account_roles"
    __table_args__ = (UniqueConstraint("telegram_id", "role", "scope"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    telegram_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.telegram_id", ondelete="CASCADE"), index=True
    )
    role: Mapped[Role] = mapped_column(EnumText(Role, 16))
    scope: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="roles")
