"""What a family sees under "Status bantuan": PKH components and stages, BPNT month and balance.

Every amount and status comes from imported data (disbursements, ledger, rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Beneficiary, Disbursement, LedgerEntry, PkhComponent, PkhComponentRate
from models.disbursement import UNDATED_STATUSES
from models.enums import Program
from services.bpnt import ledger as wallet

PKH_STAGES = ("T1", "T2", "T3", "T4")
PENDING_STATUSES = UNDATED_STATUSES  # approved or at the bank: not paid yet


@dataclass(frozen=True)
class ComponentLine:
    component: str
    count: int
    yearly_amount: int  # count × rate


@dataclass(frozen=True)
class StageLine:
    stage: str  # T1..T4
    status: str | None  # None: nothing announced yet
    amount: int | None
    date: date | None


@dataclass(frozen=True)
class PkhStatus:
    enrolled: bool
    year: int
    components: list[ComponentLine] = field(default_factory=list)
    stages: list[StageLine] = field(default_factory=list)
    next_stage: StageLine | None = None

    @property
    def yearly_total(self) -> int:
        return sum(line.yearly_amount for line in self.components)


@dataclass(frozen=True)
class BpntStatus:
    enrolled: bool
    period: str
    month_status: str | None = None
    month_amount: int | None = None
    balance: int = 0
    recent: list[LedgerEntry] = field(default_factory=list)


@dataclass(frozen=True)
class AidStatus:
    beneficiary: Beneficiary
    pkh: PkhStatus
    bpnt: BpntStatus


async def _component_lines(
    session: AsyncSession, beneficiary_id: int, year: int
) -> list[ComponentLine]:
    """Each component with its yearly amount at the rate in force for `year`."""
    latest = (
        select(PkhComponentRate.component, func.max(PkhComponentRate.year).label("year"))
        .where(PkhComponentRate.year <= year)
        .group_by(PkhComponentRate.component)
        .subquery()
    )
    rows = await session.execute(
        select(PkhComponent.component, PkhComponent.count, PkhComponentRate.yearly_amount)
        .join(latest, latest.c.component == PkhComponent.component, isouter=True)
        .join(
            PkhComponentRate,
            (PkhComponentRate.component == latest.c.component)
            & (PkhComponentRate.year == latest.c.year),
            isouter=True,
        )
        .where(PkhComponent.beneficiary_id == beneficiary_id)
        .order_by(PkhComponent.component)
    )
    return [ComponentLine(component, count, count * (rate or 0)) for component, count, rate in rows]


async def pkh_status(session: AsyncSession, beneficiary: Beneficiary, today: date) -> PkhStatus:
    if not beneficiary.is_pkh:
        return PkhStatus(enrolled=False, year=today.year)
    year = today.year
    records = {
        row.period[-2:]: row
        for row in await session.scalars(
            select(Disbursement).where(
                Disbursement.beneficiary_id == beneficiary.id,
                Disbursement.program == Program.PKH,
                Disbursement.period.like(f"{year}-T_"),
            )
        )
    }
    stages = [
        StageLine(stage, rec.status, rec.amount, rec.date)
        if (rec := records.get(stage))
        else StageLine(stage, None, None, None)
        for stage in PKH_STAGES
    ]
    next_stage = next(
        (line for line in stages if line.status is None or line.status in PENDING_STATUSES), None
    )
    return PkhStatus(
        enrolled=True,
        year=year,
        components=await _component_lines(session, beneficiary.id, year),
        stages=stages,
        next_stage=next_stage,
    )


async def bpnt_status(session: AsyncSession, beneficiary: Beneficiary, today: date) -> BpntStatus:
    period = f"{today.year:04d}-{today.month:02d}"
    if not beneficiary.is_bpnt:
        return BpntStatus(enrolled=False, period=period)
    month = await session.scalar(
        select(Disbursement).where(
            Disbursement.beneficiary_id == beneficiary.id,
            Disbursement.program == Program.BPNT,
            Disbursement.period == period,
        )
    )
    return BpntStatus(
        enrolled=True,
        period=period,
        month_status=month.status if month else None,
        month_amount=month.amount if month else None,
        balance=await wallet.balance(session, beneficiary.id),
        recent=await wallet.recent_entries(session, beneficiary.id, limit=5),
    )


async def aid_status(session: AsyncSession, beneficiary: Beneficiary, today: date) -> AidStatus:
    """Everything "Status bantuan" shows, for the family's own regional `today`."""
    return AidStatus(
        beneficiary=beneficiary,
        pkh=await pkh_status(session, beneficiary, today),
        bpnt=await bpnt_status(session, beneficiary, today),
    )
