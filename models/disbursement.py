"""Disbursements (penyaluran) of PKH stages and BPNT months, as imported."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow
from models.enums import DisbursementStatus, EnumText, Program

# Statuses that may come without a date: approved (ditetapkan) and at the bank (diproses).
UNDATED_STATUSES = (DisbursementStatus.DITETAPKAN, DisbursementStatus.DIPROSES)
DATE_RULE = f"date IS NOT NULL OR status IN ({', '.join(repr(str(s)) for s in UNDATED_STATUSES)})"


class Disbursement(Base):
    __tablename__ = "disbursements"
    __table_args__ = (
        UniqueConstraint("beneficiary_id", "program", "period"),
        CheckConstraint(DATE_RULE, name="date_when_paid"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), index=True
    )
    program: Mapped[Program] = mapped_column(EnumText(Program, 8))
    period: Mapped[str] = mapped_column(String(7))  # 2025-T2 | 2025-05
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[DisbursementStatus] = mapped_column(EnumText(DisbursementStatus, 16))
    # The day it was paid (disalurkan) or failed (gagal); may be unknown before that.
    date: Mapped[date | None] = mapped_column(Date)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
