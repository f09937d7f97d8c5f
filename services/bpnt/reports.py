"""An e-Warong's day of redemptions, in its own time zone, and the day as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Beneficiary, EWarong, LedgerEntry, Redemption
from models.enums import LedgerKind
from services.identity import mask_name
from services.regions import timezone_for


@dataclass(frozen=True)
class DayReport:
    ewarong: EWarong
    day: date
    redemptions: list[Redemption] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Money taken that day, net of reversals."""
        return sum(r.total for r in self.redemptions if r.reversed_at is None)


def _day_bounds(day: date, region_code: str) -> tuple[datetime, datetime]:
    zone = timezone_for(region_code)
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, start + timedelta(days=1)


async def day_report(session: AsyncSession, ewarong: EWarong, day: date) -> DayReport:
    """The e-Warong's redemptions on `day` in its own regional time zone."""
    start, end = _day_bounds(day, ewarong.village_code)
    rows = await session.scalars(
        select(Redemption)
        .where(
            Redemption.ewarong_code == ewarong.code,
            Redemption.created_at >= start,
            Redemption.created_at < end,
        )
        .order_by(Redemption.id)
    )
    return DayReport(ewarong, day, list(rows))


def local_day(now: datetime, region_code: str) -> date:
    return now.astimezone(timezone_for(region_code)).date()


CSV_COLUMNS = (
    "redemption_id", "time_local", "ewarong_code", "ewarong_name", "family",
    "agent_attested", "items", "total", "balance_after", "status", "ledger_entry_id",
)  # fmt: skip


def csv_cell(value: object) -> str:
    """Text for a CSV cell that a spreadsheet shows literally (no formula injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def export_csv(session: AsyncSession, report: DayReport) -> bytes:
    """The day's redemptions as CSV; its totals reconcile to the ledger's debit entries."""
    ids = [r.id for r in report.redemptions]
    entries = {
        entry.redemption_id: entry
        for entry in await session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.redemption_id.in_(ids), LedgerEntry.kind == LedgerKind.REDEMPTION
            )
        )
    }
    names = dict(
        (
            await session.execute(
                select(Beneficiary.id, Beneficiary.name).where(
                    Beneficiary.id.in_({r.beneficiary_id for r in report.redemptions})
                )
            )
        ).all()
    )
    zone = timezone_for(report.ewarong.village_code)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.redemptions:
        items = ";".join(f"{i['item']}:{i['quantity']}x{i['unit_price']}" for i in r.items)
        writer.writerow(
            csv_cell(value)
            for value in (
                r.id,
                r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                report.ewarong.code,
                report.ewarong.name,
                mask_name(names.get(r.beneficiary_id, "")),
                "yes" if r.agent_attested else "no",
                items,
                r.total,
                r.balance_after,
                "reversed" if r.reversed_at else ("disputed" if r.disputed_at else "confirmed"),
                entries[r.id].id if r.id in entries else "",
            )
        )
    return buffer.getvalue().encode("utf-8")
