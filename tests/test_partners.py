"""Importing partner organisations (validation, all-or-nothing, idempotency) and invites."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import PartnerCoverage, PartnerOrganisation
from services.invites import InviteError, create_invite
from services.napza.partners import (
    KINDS,
    coverage_of,
    covering_prefixes,
    get_partner,
    import_partners,
)
from tests.support.clock import NOW

HEADER = "code,name,kind,region_codes,phone,services\n"
GOOD = (
    HEADER
    + "IPWL-3204,IPWL Bandung,ipwl,32.04;32.73,081234567890,Konseling; rawat jalan\n"
    + "RS-32,RSJ Jawa Barat,rumah_sakit,32,,Rawat inap\n"
    + "BNN,BNN Pusat,LAINNYA,*,+62215000184,\n"
)


def write(tmp_path: Path, text: str, name: str = "partners.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_import_stores_partners_and_coverage(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    report = await import_partners(sessionmaker, write(tmp_path, GOOD))
    assert report.ok, report.errors
    assert (report.inserted, report.updated, report.unchanged) == (3, 0, 0)
    ipwl = await get_partner(session, "IPWL-3204")
    assert ipwl is not None
    assert (ipwl.name, ipwl.kind, ipwl.phone, ipwl.active) == (
        "IPWL Bandung",
        "ipwl",
        "+6281234567890",
        True,
    )
    assert ipwl.services == "Konseling; rawat jalan"
    assert await coverage_of(session, "IPWL-3204") == ["32.04", "32.73"]
    assert await coverage_of(session, "BNN") == [""]
    bnn = await get_partner(session, "BNN")
    assert bnn is not None and bnn.kind == "lainnya" and bnn.services == ""
    rs = await get_partner(session, "RS-32")
    assert rs is not None and rs.phone == ""


async def test_import_is_idempotent_and_replaces_coverage(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    path = write(tmp_path, GOOD)
    await import_partners(sessionmaker, path)
    again = await import_partners(sessionmaker, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    changed = GOOD.replace("32.04;32.73", "32.73")
    report = await import_partners(sessionmaker, write(tmp_path, changed, "b.csv"))
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 2)
    assert await coverage_of(session, "IPWL-3204") == ["32.73"]
    rows = (await session.execute(select(PartnerCoverage))).scalars().all()
    assert len(rows) == 3


async def test_bad_rows_are_reported_by_line_and_nothing_is_written(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    text = (
        HEADER
        + "OK-1,Fine,puskesmas,32.04,,\n"  # line 2: valid
        + "has space,,klinik,32.04,,\n"  # line 3: code, name, kind
        + "OK-1,Twice,ipwl,99.99,12,\n"  # line 4: duplicate code, unknown region, phone
        + "X-2,Bad prefix,ipwl,32.x;,,\n"  # line 5: malformed region code
        + "X-3,No region,ipwl,,,\n"  # line 6: empty region_codes
        + f"X-4,Long,ipwl,*,,{'s' * 301}\n"  # line 7: services too long
    )
    report = await import_partners(sessionmaker, write(tmp_path, text))
    assert not report.ok
    found = {(e.line, e.column) for e in report.errors}
    assert {
        (3, "code"),
        (3, "name"),
        (3, "kind"),
        (4, "code"),
        (4, "phone"),
        (4, "region_codes"),
        (5, "region_codes"),
        (6, "region_codes"),
        (7, "services"),
    } <= found
    assert all(e.line != 2 for e in report.errors)
    assert "12" not in " ".join(e.reason for e in report.errors)
    assert (await session.execute(select(PartnerOrganisation))).first() is None


async def test_wrong_header_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    report = await import_partners(sessionmaker, write(tmp_path, "code,name\nA,B\n"))
    assert not report.ok and report.errors[0].line == 1


def test_kinds_and_prefixes() -> None:
    assert KINDS == ("ipwl", "rehabilitasi", "puskesmas", "rumah_sakit", "lainnya")
    assert covering_prefixes("32.04") == ["", "32", "32.04"]


async def test_partner_invites_need_an_active_organisation(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await import_partners(sessionmaker, write(tmp_path, GOOD))
    async with sessionmaker() as session, session.begin():
        payload = await create_invite(session, "partner", "IPWL-3204", created_by=None, now=NOW)
        assert payload.startswith("inv_")
        with pytest.raises(InviteError, match="no partner organisation with code NOPE"):
            await create_invite(session, "partner", "NOPE", created_by=None, now=NOW)
        organisation = await session.get(PartnerOrganisation, "RS-32")
        assert organisation is not None
        organisation.active = False
        await session.flush()
        with pytest.raises(InviteError, match="RS-32 is inactive"):
            await create_invite(session, "partner", "RS-32", created_by=None, now=NOW)


def test_cli_import_partners_and_purge(database_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    runner = CliRunner()
    env = {"DATABASE_URL": database_url, "SECRET_KEY": "test-secret-key-not-for-production"}
    good = write(tmp_path, HEADER + "CLI-1,Puskesmas Coblong,puskesmas,32.73,,Konseling\n")
    result = runner.invoke(app, ["import", "partners", str(good)], env=env)
    assert result.exit_code == 0, result.output
    assert "Partners:" in result.output and "unchanged" in result.output
    bad = write(tmp_path, HEADER + "CLI-2,X,klinik,32.73,,\n", "bad.csv")
    result = runner.invoke(app, ["import", "partners", str(bad)], env=env)
    assert result.exit_code == 1 and "kind" in result.output
    result = runner.invoke(app, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "Purged 0" in result.output
