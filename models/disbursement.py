"""Disbursements (penyaluran) of PKH stages and BPNT months, as imported."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow


class Disbursement(Base):
    __tablename__ = "disbursements"
    __table_args__ = (UniqueConstraint("beneficiary_id", "program", "period"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True
    )
    program: Mapped[str] = mapped_column(String(8))  # PKH | BPNT
    period: Mapped[str] = mapped_column(String(7))  # 2025-T2 | 2025-05
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # ditetapkan|diproses|disalurkan|gagal
    date: Mapped[date] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
