"""A small registry of test families, imported through the real CSV importers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.identity import Hasher
from services.imports.beneficiaries import import_beneficiaries
from services.imports.disbursements import import_disbursements
from services.registry import activation

BENEFICIARIES = """\
nik,name,birth_date,phone,kks_number,village_code,programs,pkh_components
3204105507850003,Siti Aminah,1985-07-15,081234567890,5264221234567890,32.04.10.2001,PKH;BPNT,anak_sd:2;lansia:1
3273012304900001,Budi Santoso,1990-04-23,,5264229876543210,32.73.01.1001,BPNT,
5171014208750002,Made Ayu Lestari,1975-08-02,081338765432,,51.71.01.1001,PKH,ibu_hamil:1
"""  # noqa: E501

DISBURSEMENTS = """\
nik,program,period,amount,status,date
3204105507850003,PKH,2026-T1,1050000,disalurkan,2026-03-14
3204105507850003,PKH,2026-T2,1050000,diproses,2026-05-10
3204105507850003,BPNT,2026-04,200000,disalurkan,2026-04-05
3204105507850003,BPNT,2026-05,200000,disalurkan,2026-05-06
3273012304900001,BPNT,2026-05,200000,diproses,2026-05-06
"""

SITI = {"nik": "3204105507850003", "birth_date": "15-07-1985", "phone": "081234567890"}
BUDI = {"nik": "3273012304900001", "birth_date": "23-04-1990", "phone": "085711112222"}


async def load_registry(
    sessionmaker: async_sessionmaker[AsyncSession], hasher: Hasher, folder: Path
) -> None:
    """Import the test families and their disbursements; fail loudly on any row error."""
    people = folder / "beneficiaries.csv"
    people.write_text(BENEFICIARIES, encoding="utf-8")
    money = folder / "disbursements.csv"
    money.write_text(DISBURSEMENTS, encoding="utf-8")
    report = await import_beneficiaries(sessionmaker, people, hasher)
    assert report.ok, report.errors
    report = await import_disbursements(sessionmaker, money, hasher)
    assert report.ok, report.errors


async def activation_code_for(
    sessionmaker: async_sessionmaker[AsyncSession],
    hasher: Hasher,
    nik: str,
    now: datetime | None = None,
) -> str:
    """What the village office hands the family: a fresh activation code, as printed."""
    async with sessionmaker() as session, session.begin():
        issued = await activation.issue(
            session, hasher, nik, now or datetime.now(UTC), timedelta(days=30)
        )
    assert issued.code is not None, issued.result
    return activation.shown(issued.code)
