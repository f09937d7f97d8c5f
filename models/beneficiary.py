"""Registry data of beneficiary families (KPM), as imported from the ministry's files."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, BigIntPK, utcnow


class Beneficiary(Base):
    """A KPM. The NIK is never stored: only its HMAC (for lookup) and last four digits."""

    __tablename__ = "beneficiaries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    nik_hash: Mapped[str] = mapped_column(String(64), unique=True)
    nik_last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date] = mapped_column(Date)
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    kks_hash: Mapped[str | None] = mapped_column(String(64), index=True, unique=True)
    kks_last4: Mapped[str | None] = mapped_column(String(4))
    village_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    is_pkh: Mapped[bool] = mapped_column(default=False)
    is_bpnt: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    components: Mapped[list[PkhComponent]] = relationship(
        back_populates="beneficiary", cascade="all, delete-orphan", lazy="selectin"
    )


class PkhComponent(Base):
    """How many members of a PKH family fall in one component (e.g. 2 × anak_sd)."""

    __tablename__ = "pkh_components"

    beneficiary_id: Mapped[int] = mapped_column(
        ForeignKey("beneficiaries.id", ondelete="CASCADE"), primary_key=True
    )
    component: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)

    beneficiary: Mapped[Beneficiary] = relationship(back_populates="components")


class PkhComponentRate(Base):
    """Yearly PKH amount per member of a component, valid from `year` on (data, not code)."""

    __tablename__ = "pkh_component_rates"

    component: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    yearly_amount: Mapped[int] = mapped_column(BigInteger)
