"""BPNT wallet balances and their append-only ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, BigIntPK, utcnow
from models.enums import EnumText, LedgerKind


class BpntWallet(Base):
    """The family's current BPNT balance; only ever changed together with a ledger row."""

    __tablename__ = "bpnt_wallets"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"),)

    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), primary_key=True
    )
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    # "Kunci belanja": the family stopped all redemptions (a lost or held card).
    locked: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A disputed transaction froze the code flow until an admin looks.
    frozen: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Redemptions by KKS card number alone (no Telegram code) in `kks_month` (YYYY-MM):
    # counted on this row so that the monthly cap holds under concurrent confirmations.
    kks_month: Mapped[str | None] = mapped_column(String(7))
    kks_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class LedgerEntry(Base):
    """One movement of BPNT money. Never updated or deleted; corrections are new entries."""

    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_beneficiary_created", "beneficiary_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id", ondelete="CASCADE"))
    kind: Mapped[LedgerKind] = mapped_column(EnumText(LedgerKind, 24))
    amount: Mapped[int] = mapped_column(BigInteger)  # signed: + credit, - debit
    balance_after: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    disbursement_id: Mapped[int | None] = mapped_column(ForeignKey("disbursements.id"), index=True)
    reference: Mapped[str | None] = mapped_column(String(80))  # e.g. the period "2025-05"
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
