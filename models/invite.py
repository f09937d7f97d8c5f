"""One-time deep-link invitations that bind a Telegram account to a role."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow
from models.enums import EnumText, Role


class Invite(Base):
    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(EnumText(Role, 16))  # agent | partner
    scope: Mapped[str] = mapped_column(String(32))  # e-Warong code | organisation code
    created_by: Mapped[int | None] = mapped_column(BigInteger)  # None: the CLI
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[int | None] = mapped_column(BigInteger)
