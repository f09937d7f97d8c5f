"""e-Warong shops, their agents' redemptions of BPNT money, and one-time shopping codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow


class EWarong(Base):
    __tablename__ = "ewarongs"
    __table_args__ = (Index("ix_ewarongs_lat_lon", "latitude", "longitude"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    village_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    address: Mapped[str] = mapped_column(String(300))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    bank: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ShoppingCode(Base):
    """A 6-digit one-time code a family shows at the e-Warong (stored as an HMAC)."""

    __tablename__ = "shopping_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    voided_at: Mapped[datetime | None]  # replaced by a newer code
    used_at: Mapped[datetime | None]  # consumed by a confirmed redemption


class Redemption(Base):
    """A confirmed purchase at an e-Warong, debited from the family's BPNT wallet."""

    __tablename__ = "redemptions"
    __table_args__ = (Index("ix_redemptions_ewarong_created", "ewarong_code", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    ewarong_code: Mapped[str] = mapped_column(ForeignKey("ewarongs.code"))
    agent_telegram_id: Mapped[int] = mapped_column(BigInteger)
    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True
    )
    shopping_code_id: Mapped[int | None] = mapped_column(ForeignKey("shopping_codes.id"))
    agent_attested: Mapped[bool] = mapped_column(default=False)  # KKS number, no code
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    total: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disputed_at: Mapped[datetime | None]
    dispute_resolved_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]
    reversal_reason: Mapped[str | None] = mapped_column(String(500))
    reversed_by: Mapped[int | None] = mapped_column(BigInteger)
