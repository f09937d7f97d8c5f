"""Figures for an admin's "Statistik" and the pending-referrals list, always limited to
the admin's scope (a region prefix; "" = national). Counts only: no names or NIKs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, Beneficiary, Broadcast, EWarong, HelpRequest, Redemption
from models.enums import RequestStatus
from services.broadcasts import store as broadcasts
from services.regions import region_names, timezone_for

# Region code lengths by level: province 32, regency 32.04, district 32.04.01, village.
LEVEL_LENGTHS = (2, 5, 8, 13)
OPEN_REFERRALS = (RequestStatus.ROUTING, RequestStatus.ACCEPTED, RequestStatus.ESCALATED)


@dataclass(frozen=True)
class RegionLine:
    code: str
    name: str  # the code when the region list does not know it
    linked: int
    pkh: int
    bpnt: int


@dataclass(frozen=True)
class Overview:
    area: str | None  # the scope's region name; None for a national admin
    linked: int
    pkh: int
    bpnt: int
    regions: list[RegionLine]
    redemptions_today: int
    redeemed_today: int
    open_referrals: int
    overdue_referrals: int
    broadcasts: list[Broadcast]


def _child_length(scope: str) -> int:
    """The code length of the level just below the scope (villages stay villages)."""
    for length in LEVEL_LENGTHS:
        if length > len(scope):
            return length
    return LEVEL_LENGTHS[-1]


def _under(column: ColumnElement[str], scope: str) -> ColumnElement[bool]:
    return column.startswith(scope, autoescape=True)


def start_of_day(now: datetime, scope: str) -> datetime:
    """Midnight today in the scope's time zone (WIB for a national admin)."""
    zone = timezone_for(scope or None)
    return datetime.combine(now.astimezone(zone).date(), time(0), tzinfo=zone)


def offer_overdue(now: datetime) -> ColumnElement[bool]:
    """Offered to a partner whose answer time has passed."""
    return (HelpRequest.status == RequestStatus.ROUTING) & (HelpRequest.sla_due_at < now)


def overdue_condition(now: datetime) -> ColumnElement[bool]:
    """Escalated requests, and offers whose answer time has passed."""
    return (HelpRequest.status == RequestStatus.ESCALATED) | offer_overdue(now)


async def overview(session: AsyncSession, scope: str, now: datetime, top: int = 10) -> Overview:
    length = _child_length(scope)
    region = func.substr(Beneficiary.village_code, 1, length)
    pkh = func.sum(case((Beneficiary.is_pkh.is_(True), 1), else_=0))
    bpnt = func.sum(case((Beneficiary.is_bpnt.is_(True), 1), else_=0))
    rows = (
        await session.execute(
            select(region, func.count(), pkh, bpnt)
            .select_from(Account)
            .join(Beneficiary, Beneficiary.id == Account.beneficiary_id)
            .where(_under(Beneficiary.village_code, scope))
            .group_by(region)
            .order_by(func.count().desc(), region)
        )
    ).all()
    names = await region_names(session, [scope, *(code for code, *_ in rows[:top])])
    lines = [
        RegionLine(code, names.get(code, code), int(n), int(p or 0), int(b or 0))
        for code, n, p, b in rows
    ]
    redemptions = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Redemption.total), 0))
            .join(EWarong, EWarong.code == Redemption.ewarong_code)
            .where(
                _under(EWarong.village_code, scope),
                Redemption.created_at >= start_of_day(now, scope),
                Redemption.reversed_at.is_(None),
            )
        )
    ).one()
    referrals = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((overdue_condition(now), 1), else_=0)), 0),
            ).where(HelpRequest.status.in_(OPEN_REFERRALS), _under(HelpRequest.region_code, scope))
        )
    ).one()
    return Overview(
        area=(names.get(scope, scope) if scope else None),
        linked=sum(line.linked for line in lines),
        pkh=sum(line.pkh for line in lines),
        bpnt=sum(line.bpnt for line in lines),
        regions=lines[:top],
        redemptions_today=int(redemptions[0]),
        redeemed_today=int(redemptions[1]),
        open_referrals=int(referrals[0]),
        overdue_referrals=int(referrals[1]),
        broadcasts=await broadcasts.in_progress(session, scope),
    )


@dataclass(frozen=True)
class PendingReferral:
    request: HelpRequest
    region: str  # the region's name (its code when unknown)
    overdue: bool  # offered, and the partner's answer time has passed


async def pending_referrals(
    session: AsyncSession, scope: str, now: datetime, limit: int = 20
) -> list[PendingReferral]:
    """Open Napza requests in the scope: escalated, then overdue, then the rest; oldest
    first within each."""
    escalated_first = case(
        (HelpRequest.status == RequestStatus.ESCALATED, 0), (overdue_condition(now), 1), else_=2
    )
    rows = (
        await session.execute(
            select(HelpRequest, offer_overdue(now))
            .where(HelpRequest.status.in_(OPEN_REFERRALS), _under(HelpRequest.region_code, scope))
            .order_by(escalated_first, HelpRequest.created_at)
            .limit(limit)
        )
    ).all()
    names = await region_names(session, (request.region_code for request, _ in rows))
    return [
        PendingReferral(request, names.get(request.region_code, request.region_code), bool(late))
        for request, late in rows
    ]


async def open_referrals(session: AsyncSession) -> int:
    """All open referrals (the metrics gauge)."""
    return int(
        await session.scalar(select(func.count()).where(HelpRequest.status.in_(OPEN_REFERRALS)))
        or 0
    )
