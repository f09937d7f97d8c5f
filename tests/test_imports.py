"""Beneficiary and disbursement imports: validation by line, all-or-nothing, idempotency."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Beneficiary, BpntWallet, Disbursement, LedgerEntry, PkhComponent
from services.bpnt import ledger as wallet
from services.identity import Hasher
from services.imports import staging
from services.imports.beneficiaries import (
    BENEFICIARY_COLUMNS,
    import_beneficiaries,
    import_beneficiary_records,
)
from services.imports.csvfile import ImportReport, records_from_dicts
from services.imports.disbursements import (
    DISBURSEMENT_COLUMNS,
    import_disbursement_records,
    import_disbursements,
)
from tests.conftest import TEST_SECRET

HASHER = Hasher(TEST_SECRET.encode())
B_HEADER = ",".join(BENEFICIARY_COLUMNS)
D_HEADER = ",".join(DISBURSEMENT_COLUMNS)

SITI = (
    "3204105507850003,Siti Aminah,1985-07-15,081234567890,5264221234567890,"
    "32.04.10.2001,PKH;BPNT,anak_sd:2;lansia:1"
)
BUDI = "3578010903720001,Budi Santoso,1972-03-09,,,35.78.01.1002,BPNT,"
NUR = "7371016311900002,Nur Aisyah,1990-11-23,085298765432,,73.71.01.1006,PKH,ibu_hamil:1"
SITI_NIK, BUDI_NIK, NUR_NIK = "3204105507850003", "3578010903720001", "7371016311900002"


def csv_file(folder: Path, header: str, *rows: str, name: str = "data.csv") -> Path:
    """A CSV file with the header and rows."""
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def counts(report: ImportReport) -> tuple[int, int, int]:
    """(inserted, updated, unchanged)."""
    assert report.ok, report.errors
    return report.inserted, report.updated, report.unchanged


def errors_of(report: ImportReport) -> list[tuple[int, str | None, str]]:
    """The report's errors as plain tuples."""
    return [(error.line, error.column, error.reason) for error in report.errors]


async def table_count(session: AsyncSession, model: type) -> int:
    """Rows in a model's table."""
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def import_people(
    sessionmaker: async_sessionmaker[AsyncSession], folder: Path, *rows: str
) -> ImportReport:
    """Import beneficiary rows through a CSV file."""
    return await import_beneficiaries(sessionmaker, csv_file(folder, B_HEADER, *rows), HASHER)


async def import_money(
    sessionmaker: async_sessionmaker[AsyncSession], folder: Path, *rows: str
) -> ImportReport:
    """Import disbursement rows through a CSV file."""
    path = csv_file(folder, D_HEADER, *rows, name="money.csv")
    return await import_disbursements(sessionmaker, path, HASHER)


async def beneficiary(session: AsyncSession, nik: str) -> Beneficiary:
    """The stored beneficiary for a NIK."""
    session.expire_all()
    found = await session.scalar(select(Beneficiary).where(Beneficiary.nik_hash == HASHER.nik(nik)))
    assert found is not None
    return found


# --- beneficiaries -----------------------------------------------------------------


async def test_import_stores_only_hashes_and_last_digits(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    report = await import_people(sessionmaker, tmp_path, SITI, BUDI, NUR)
    assert counts(report) == (3, 0, 0)
    siti = await beneficiary(session, SITI_NIK)
    assert (siti.nik_last4, siti.name, siti.birth_date) == (
        "0003",
        "Siti Aminah",
        date(1985, 7, 15),
    )
    assert siti.phone_hash == HASHER.phone("+6281234567890")
    assert (siti.kks_hash, siti.kks_last4) == (HASHER.kks("5264221234567890"), "7890")
    assert (siti.village_code, siti.is_pkh, siti.is_bpnt) == ("32.04.10.2001", True, True)
    assert {c.component: c.count for c in siti.components} == {"anak_sd": 2, "lansia": 1}
    budi = await beneficiary(session, BUDI_NIK)
    assert (budi.phone_hash, budi.kks_hash, budi.kks_last4) == (None, None, None)
    assert (budi.is_pkh, budi.is_bpnt, budi.components) == (False, True, [])
    stored = " ".join(str(v) for v in vars(siti).values())
    for secret in (SITI_NIK, "081234567890", "6281234567890", "5264221234567890"):
        assert secret not in stored


async def test_reimport_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    assert counts(await import_people(sessionmaker, tmp_path, SITI, BUDI)) == (2, 0, 0)
    before = (await beneficiary(session, SITI_NIK)).updated_at
    assert counts(await import_people(sessionmaker, tmp_path, SITI, BUDI)) == (0, 0, 2)
    assert await table_count(session, Beneficiary) == 2
    assert await table_count(session, PkhComponent) == 2
    assert (await beneficiary(session, SITI_NIK)).updated_at == before


async def test_changed_rows_are_updated_and_components_replaced(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await import_people(sessionmaker, tmp_path, SITI, BUDI)
    first_id = (await beneficiary(session, SITI_NIK)).id
    changed = SITI.replace("Siti Aminah", "Siti  Aminah Lubis").replace(
        "anak_sd:2;lansia:1", "anak_sd:1;anak_smp:1"
    )
    assert counts(await import_people(sessionmaker, tmp_path, changed, BUDI, NUR)) == (1, 1, 1)
    siti = await beneficiary(session, SITI_NIK)
    assert (siti.id, siti.name) == (first_id, "Siti Aminah Lubis")
    assert {c.component: c.count for c in siti.components} == {"anak_sd": 1, "anak_smp": 1}
    only_components = changed.replace("anak_sd:1;anak_smp:1", "lansia:2")
    assert counts(await import_people(sessionmaker, tmp_path, only_components)) == (0, 1, 0)
    siti = await beneficiary(session, SITI_NIK)
    assert {c.component: c.count for c in siti.components} == {"lansia": 2}
    bpnt_only = only_components.replace("PKH;BPNT,lansia:2", "BPNT,")
    assert counts(await import_people(sessionmaker, tmp_path, bpnt_only)) == (0, 1, 0)
    siti = await beneficiary(session, SITI_NIK)
    assert (siti.is_pkh, siti.is_bpnt, siti.components) == (False, True, [])


async def test_bom_and_case_of_header_are_accepted(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(("\ufeff" + B_HEADER.upper() + "\r\n" + SITI + "\r\n").encode())
    assert counts(await import_beneficiaries(sessionmaker, path, HASHER)) == (1, 0, 0)


def siti_with(**changes: str) -> str:
    """Siti's row with some columns replaced."""
    values = dict(zip(BENEFICIARY_COLUMNS, SITI.split(","), strict=True))
    values.update(changes)
    return ",".join(values[column] for column in BENEFICIARY_COLUMNS)


@pytest.mark.parametrize(
    ("changes", "column", "reason"),
    [
        ({"nik": "320410550785"}, "nik", "nik: not 16 digits"),
        ({"nik": "3204105507850O03"}, "nik", "nik: not 16 digits"),
        ({"nik": "9904105507850003"}, "nik", "nik: unknown province code"),
        ({"nik": "3204107207850003"}, "nik", "nik: birth day is not 01-31 (41-71 for women)"),
        ({"nik": "3204100007850003"}, "nik", "nik: birth day is not 01-31 (41-71 for women)"),
        ({"nik": "3204105513850003"}, "nik", "nik: birth month is not 01-12"),
        ({"name": "  "}, "name", "name: must be 1-200 characters"),
        ({"name": "A" * 201}, "name", "name: must be 1-200 characters"),
        ({"birth_date": "1985-07-16"}, "birth_date", "birth_date: does not match the NIK"),
        ({"birth_date": "1986-07-15"}, "birth_date", "birth_date: does not match the NIK"),
        ({"nik": "3204104507850003"}, "birth_date", "birth_date: does not match the NIK"),
        ({"birth_date": "15-07-1985"}, "birth_date", "birth_date: not a valid date (YYYY-MM-DD)"),
        ({"birth_date": "1985-02-30"}, "birth_date", "birth_date: not a valid date (YYYY-MM-DD)"),
        ({"phone": "12345"}, "phone", "phone: not a valid phone number"),
        ({"phone": "0812-ABC"}, "phone", "phone: not a valid phone number"),
        ({"kks_number": "52642212345"}, "kks_number", "kks_number: not 16 digits"),
        ({"village_code": "32.04.10.9999"}, "village_code", "village_code: unknown village"),
        ({"village_code": "32.04.10"}, "village_code", "village_code: not a village code"),
        ({"programs": ""}, "programs", "programs: at least one of PKH, BPNT is required"),
        ({"programs": "PKH;BLT"}, "programs", "programs: only PKH and BPNT are allowed"),
        ({"programs": "BPNT"}, "pkh_components", "pkh_components: only allowed with PKH"),
        ({"pkh_components": "anak_kuliah:1"}, "pkh_components", "unknown component"),
        ({"pkh_components": "anak_sd:0"}, "pkh_components", "positive whole count"),
        ({"pkh_components": "anak_sd:1.5"}, "pkh_components", "positive whole count"),
        ({"pkh_components": "anak_sd"}, "pkh_components", "positive whole count"),
        ({"pkh_components": "anak_sd:1;anak_sd:2"}, "pkh_components", "listed twice"),
    ],
)
async def test_each_rule_reports_its_line_and_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    changes: dict[str, str],
    column: str,
    reason: str,
) -> None:
    report = await import_people(sessionmaker, tmp_path, BUDI, siti_with(**changes), NUR)
    assert not report.ok
    assert [(e.line, e.column) for e in report.errors] == [(3, column)]
    assert reason in report.errors[0].reason
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 0)
    assert await table_count(session, Beneficiary) == 0


async def test_birth_date_in_the_future_is_rejected(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = csv_file(tmp_path, B_HEADER, SITI)
    report = await import_beneficiaries(sessionmaker, path, HASHER, today=date(1985, 7, 14))
    assert errors_of(report) == [(2, "birth_date", "birth_date: in the future")]


async def test_duplicate_nik_names_both_lines(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    report = await import_people(sessionmaker, tmp_path, SITI, BUDI, SITI.replace("Siti", "Sity"))
    assert errors_of(report) == [(4, "nik", "nik: same NIK as line 2")]


async def test_every_problem_of_a_row_is_reported(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    bad = siti_with(nik="9904105507850003", phone="1", village_code="32.04.10.9999", programs="X")
    report = await import_people(sessionmaker, tmp_path, bad)
    assert [e.column for e in report.errors] == ["nik", "phone", "village_code", "programs"]


async def test_one_bad_row_keeps_earlier_data_untouched(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await import_people(sessionmaker, tmp_path, SITI)
    renamed = SITI.replace("Siti Aminah", "Siti Baru")
    report = await import_people(sessionmaker, tmp_path, renamed, BUDI, siti_with(nik="1"))
    assert not report.ok
    assert (await beneficiary(session, SITI_NIK)).name == "Siti Aminah"
    assert await table_count(session, Beneficiary) == 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", [(1, None, "empty file: a header line is required")]),
        (b"nik,nama\n1,2\n", [(1, None, "header must be: " + B_HEADER)]),
        ((B_HEADER + "\n" + BUDI + ",extra\n").encode(), [(2, None, "expected 8 fields, found 9")]),
        ((B_HEADER + "\n" + BUDI + "\n\n").encode(), []),
        (
            (B_HEADER + "\n" + BUDI + "\nSiti \xff\n").encode("latin-1"),
            [(3, None, "not UTF-8 text")],
        ),
    ],
)
async def test_file_structure_problems(
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    content: bytes,
    expected: list[tuple[int, str | None, str]],
) -> None:
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    assert errors_of(await import_beneficiaries(sessionmaker, path, HASHER)) == expected


async def test_reasons_never_contain_personal_data(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    rows = [
        siti_with(birth_date="1985-07-16", phone="0812345", kks_number="526422123456789"),
        siti_with(nik="3204105513850077", phone="+1 650 253 0000 99"),
        siti_with(nik="9904105507850003", name="Siti", programs="BPNT"),
        siti_with(),
    ]
    report = await import_people(sessionmaker, tmp_path, *rows)
    money = await import_money(
        sessionmaker, tmp_path, "3204105507859999,BPNT,2026-01,200000,disalurkan,2026-01-05"
    )
    reasons = " ".join(e.reason for e in [*report.errors, *money.errors])
    assert len(report.errors) >= 6 and money.errors
    for secret in (
        "3204105507850003", "3204105513850077", "9904105507850003", "3204105507859999",
        "0812345", "812345", "6502530000", "526422123456789", "Siti",
    ):  # fmt: skip
        assert secret not in reasons


# --- disbursements -----------------------------------------------------------------


@pytest.fixture
async def registry(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    """Siti (PKH+BPNT), Budi (BPNT only) and Nur (PKH only) in the registry."""
    report = await import_people(sessionmaker, tmp_path, SITI, BUDI, NUR)
    assert report.ok, report.errors


def money_row(nik: str, program: str, period: str, amount: str, status: str) -> str:
    """One disbursement row dated in the period's first month."""
    month = f"{(int(period[-1]) - 1) * 3 + 1:02d}" if "-T" in period else period[-2:]
    return f"{nik},{program},{period},{amount},{status},{period[:4]}-{month}-05"


async def ledger(session: AsyncSession, nik: str) -> list[tuple[str, int, int, str, str | None]]:
    """(kind, amount, balance_after, key, reference) of a family's entries, oldest first."""
    person = await beneficiary(session, nik)
    entries = await wallet.recent_entries(session, person.id, limit=100)
    return [
        (e.kind, e.amount, e.balance_after, e.idempotency_key, e.reference)
        for e in reversed(entries)
    ]


@pytest.mark.usefixtures("registry")
async def test_disbursements_import_and_credit_bpnt(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    rows = [
        money_row(SITI_NIK, "PKH", "2026-T1", "1050000", "disalurkan"),
        money_row(SITI_NIK, "BPNT", "2026-01", "200000", "disalurkan"),
        money_row(SITI_NIK, "bpnt", "2026-02", "200000", "Diproses"),
        money_row(BUDI_NIK, "BPNT", "2026-01", "200000", "disalurkan"),
        money_row(NUR_NIK, "PKH", "2026-T1", "750000", "ditetapkan"),
    ]
    calls: list[tuple[int, int]] = []
    path = csv_file(tmp_path, D_HEADER, *rows, name="money.csv")
    report = await import_disbursements(
        sessionmaker, path, HASHER, progress=lambda d, t: calls.append((d, t))
    )
    assert counts(report) == (5, 0, 0)
    assert calls == [(5, 5)]
    siti = await beneficiary(session, SITI_NIK)
    first = await session.scalar(
        select(Disbursement.id).where(
            Disbursement.beneficiary_id == siti.id, Disbursement.period == "2026-01"
        )
    )
    assert await ledger(session, SITI_NIK) == [
        ("credit", 200000, 200000, f"bpnt-credit:{first}", "2026-01")
    ]
    assert await wallet.balance(session, siti.id) == 200000
    assert await wallet.balance(session, (await beneficiary(session, NUR_NIK)).id) == 0
    assert counts(await import_money(sessionmaker, tmp_path, *rows)) == (0, 0, 5)
    assert await table_count(session, Disbursement) == 5
    assert await table_count(session, LedgerEntry) == 2


@pytest.mark.usefixtures("registry")
async def test_status_and_amount_changes_reverse_and_recredit(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    def row(amount: str, status: str) -> str:
        return money_row(SITI_NIK, "BPNT", "2026-03", amount, status)

    await import_money(sessionmaker, tmp_path, row("200000", "disalurkan"))
    assert counts(await import_money(sessionmaker, tmp_path, row("200000", "gagal"))) == (0, 1, 0)
    await import_money(sessionmaker, tmp_path, row("200000", "disalurkan"))
    await import_money(sessionmaker, tmp_path, row("150000", "disalurkan"))
    await import_money(sessionmaker, tmp_path, row("150000", "diproses"))
    siti = await beneficiary(session, SITI_NIK)
    did = await session.scalar(
        select(Disbursement.id).where(Disbursement.beneficiary_id == siti.id)
    )
    assert await ledger(session, SITI_NIK) == [
        ("credit", 200000, 200000, f"bpnt-credit:{did}", "2026-03"),
        ("credit_reversal", -200000, 0, f"bpnt-credit-reversal:{did}:1", "2026-03"),
        ("credit", 200000, 200000, f"bpnt-credit:{did}:2", "2026-03"),
        ("credit_reversal", -200000, 0, f"bpnt-credit-reversal:{did}:2", "2026-03"),
        ("credit", 150000, 150000, f"bpnt-credit:{did}:3", "2026-03"),
        ("credit_reversal", -150000, 0, f"bpnt-credit-reversal:{did}:3", "2026-03"),
    ]
    assert await wallet.balance(session, siti.id) == 0
    latest = await wallet.recent_entries(session, siti.id, limit=2)
    assert [e.idempotency_key for e in latest] == [
        f"bpnt-credit-reversal:{did}:3",
        f"bpnt-credit:{did}:3",
    ]


@pytest.mark.usefixtures("registry")
async def test_reversal_never_takes_the_balance_below_zero(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await import_money(
        sessionmaker,
        tmp_path,
        money_row(SITI_NIK, "BPNT", "2026-01", "200000", "disalurkan"),
        money_row(SITI_NIK, "BPNT", "2026-02", "200000", "disalurkan"),
    )
    siti = await beneficiary(session, SITI_NIK)
    # The family spends 350.000 at an e-Warong (as a later redemption service would).
    await session.execute(
        update(BpntWallet).where(BpntWallet.beneficiary_id == siti.id).values(balance=50000)
    )
    session.add(
        LedgerEntry(
            beneficiary_id=siti.id, kind="redemption", amount=-350000, balance_after=50000,
            idempotency_key="test-redemption", reference="test",
        )
    )  # fmt: skip
    await session.commit()
    await import_money(
        sessionmaker, tmp_path, money_row(SITI_NIK, "BPNT", "2026-02", "200000", "gagal")
    )
    entry = (await ledger(session, SITI_NIK))[-1]
    assert entry[:3] == ("credit_reversal", -50000, 0)
    assert entry[4] == "2026-02 short 150000"
    assert await wallet.balance(session, siti.id) == 0


@pytest.mark.usefixtures("registry")
async def test_sync_accepts_an_orm_disbursement_and_is_idempotent(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await import_money(
        sessionmaker, tmp_path, money_row(SITI_NIK, "BPNT", "2026-04", "200000", "diproses")
    )
    siti = await beneficiary(session, SITI_NIK)
    row = await session.scalar(select(Disbursement).where(Disbursement.beneficiary_id == siti.id))
    assert row is not None and await wallet.balance(session, siti.id) == 0
    row.status = "disalurkan"
    await session.flush()
    await wallet.sync_disbursement_credit(session, row)
    await wallet.sync_disbursement_credit(session, row)
    await session.commit()
    assert await wallet.balance(session, siti.id) == 200000
    assert [e[0] for e in await ledger(session, SITI_NIK)] == ["credit"]


@pytest.mark.usefixtures("registry")
@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("3204105507859999,BPNT,2026-01,200000,disalurkan,2026-01-05", "nik", "not in the"),
        ("3204105507850003x,BPNT,2026-01,200000,disalurkan,2026-01-05", "nik", "not 16 digits"),
        ("9904105507850003,BPNT,2026-01,200000,disalurkan,2026-01-05", "nik", "province"),
        ("3204105507850003,BLT,2026-01,200000,disalurkan,2026-01-05", "program", "PKH or BPNT"),
        ("3204105507850003,PKH,2026-05,200000,disalurkan,2026-01-05", "period", "YYYY-T1"),
        ("3204105507850003,PKH,2026-T5,200000,disalurkan,2026-01-05", "period", "YYYY-T1"),
        ("3204105507850003,BPNT,2026-T1,200000,disalurkan,2026-01-05", "period", "YYYY-MM"),
        ("3204105507850003,BPNT,2026-13,200000,disalurkan,2026-01-05", "period", "YYYY-MM"),
        ("3204105507850003,BPNT,2026-00,200000,disalurkan,2026-01-05", "period", "YYYY-MM"),
        ("3204105507850003,BPNT,2026-1,200000,disalurkan,2026-01-05", "period", "YYYY-MM"),
        ("3204105507850003,BPNT,2026-01,-200000,disalurkan,2026-01-05", "amount", "positive"),
        ("3204105507850003,BPNT,2026-01,0,disalurkan,2026-01-05", "amount", "positive"),
        ("3204105507850003,BPNT,2026-01,200000.50,disalurkan,2026-01-05", "amount", "decimals"),
        ("3204105507850003,BPNT,2026-01,200.000,disalurkan,2026-01-05", "amount", "decimals"),
        ("3204105507850003,BPNT,2026-01,Rp200000,disalurkan,2026-01-05", "amount", "whole"),
        ("3204105507850003,BPNT,2026-01,200000,selesai,2026-01-05", "status", "one of"),
        ("3204105507850003,BPNT,2026-01,200000,disalurkan,05-01-2026", "date", "YYYY-MM-DD"),
        ("3578010903720001,PKH,2026-T1,750000,disalurkan,2026-01-05", "program", "enrolled in PKH"),
        ("7371016311900002,BPNT,2026-01,200000,disalurkan,2026-01-05", "program", "in BPNT"),
    ],
)
async def test_each_disbursement_rule_reports_its_line(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    row: str,
    column: str,
    reason: str,
) -> None:
    good = money_row(SITI_NIK, "BPNT", "2026-02", "200000", "disalurkan")
    report = await import_money(sessionmaker, tmp_path, good, row)
    assert [(e.line, e.column) for e in report.errors] == [(3, column)]
    assert reason in report.errors[0].reason
    assert await table_count(session, Disbursement) == 0
    assert await table_count(session, LedgerEntry) == 0


@pytest.mark.usefixtures("registry")
async def test_duplicate_disbursement_names_both_lines(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    row = money_row(SITI_NIK, "BPNT", "2026-02", "200000", "disalurkan")
    other = money_row(SITI_NIK, "PKH", "2026-T1", "1050000", "disalurkan")
    report = await import_money(
        sessionmaker, tmp_path, row, other, row.replace("2026-02-05", "2026-02-06")
    )
    assert errors_of(report) == [
        (4, "period", "period: same NIK, program and period as line 2"),
    ]


async def test_nik_known_only_later_in_the_file_is_not_enough(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    report = await import_money(
        sessionmaker, tmp_path, money_row(SITI_NIK, "BPNT", "2026-02", "200000", "disalurkan")
    )
    assert errors_of(report) == [(2, "nik", "nik: not in the beneficiary registry")]


async def test_large_file_is_written_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staging, "STAGE_BATCH", 1000)

    def person(n: int) -> dict[str, str]:
        return {
            "nik": f"3204101501900{n:03d}"[:12] + f"{n:04d}",
            "name": f"Warga {n}",
            "birth_date": "1990-01-15",
            "phone": "",
            "kks_number": "",
            "village_code": "32.04.10.2001",
            "programs": "BPNT",
            "pkh_components": "",
        }

    people = [person(n) for n in range(1, 2501)]
    calls: list[tuple[int, int]] = []
    report = await import_beneficiary_records(
        sessionmaker, records_from_dicts(people), HASHER, progress=lambda d, t: calls.append((d, t))
    )
    assert counts(report) == (2500, 0, 0)
    assert calls == [(1000, 2500), (2000, 2500), (2500, 2500)]
    money = [
        {"nik": p["nik"], "program": "BPNT", "period": "2026-01", "amount": "200000",
         "status": "disalurkan" if i % 2 else "diproses", "date": "2026-01-05"}
        for i, p in enumerate(people)
    ]  # fmt: skip
    report = await import_disbursement_records(sessionmaker, records_from_dicts(money), HASHER)
    assert counts(report) == (2500, 0, 0)
    assert await table_count(session, LedgerEntry) == 1250
    total = await session.scalar(select(func.sum(BpntWallet.balance)))
    assert total == 1250 * 200000


# --- the wallet invariant ------------------------------------------------------------

_serials = itertools.count(1)
AMOUNTS = st.sampled_from([100000, 200000, 250000])
STATUS = st.sampled_from(["ditetapkan", "diproses", "disalurkan", "gagal"])
# One import: for each of three months, either absent from the file or (status, amount).
STEP = st.lists(st.none() | st.tuples(STATUS, AMOUNTS), min_size=3, max_size=3)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(STEP, min_size=1, max_size=5))
async def test_wallet_always_matches_ledger_and_credited_disbursements(
    sessionmaker: async_sessionmaker[AsyncSession],
    steps: list[list[tuple[str, int] | None]],
) -> None:
    # A new family per example (NIK 91.71.01, born 1950-01-01) so examples never interfere.
    nik = f"917101010150{next(_serials):04d}"
    family = {
        "nik": nik, "name": "Contoh", "birth_date": "1950-01-01", "phone": "",
        "kks_number": "", "village_code": "91.71.01.1001", "programs": "BPNT",
        "pkh_components": "",
    }  # fmt: skip
    report = await import_beneficiary_records(sessionmaker, records_from_dicts([family]), HASHER)
    assert report.ok, report.errors
    for step in steps:
        rows = [
            {"nik": nik, "program": "BPNT", "period": f"2026-{month:02d}", "amount": str(amount),
             "status": status, "date": f"2026-{month:02d}-05"}
            for month, entry in enumerate(step, start=1) if entry
            for status, amount in [entry]
        ]  # fmt: skip
        report = await import_disbursement_records(sessionmaker, records_from_dicts(rows), HASHER)
        assert report.ok, report.errors
        async with sessionmaker() as session:
            await check_wallet(session, HASHER.nik(nik))


async def check_wallet(session: AsyncSession, nik_hash: str) -> None:
    """balance == sum(ledger) == credited disbursements, never negative, running totals."""
    family_id = await session.scalar(select(Beneficiary.id).where(Beneficiary.nik_hash == nik_hash))
    assert family_id is not None
    balance = await wallet.balance(session, family_id)
    entries = list(reversed(await wallet.recent_entries(session, family_id, limit=1000)))
    credited = await session.scalar(
        select(func.coalesce(func.sum(Disbursement.amount), 0)).where(
            Disbursement.beneficiary_id == family_id,
            Disbursement.program == "BPNT",
            Disbursement.status == "disalurkan",
        )
    )
    assert balance >= 0
    assert balance == sum(e.amount for e in entries) == credited
    running = 0
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running >= 0


async def test_quoted_fields_with_commas_and_quotes(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    row = siti_with(name='"Aminah, Siti ""Ami"""')
    assert counts(await import_people(sessionmaker, tmp_path, row)) == (1, 0, 0)
    assert (await beneficiary(session, SITI_NIK)).name == 'Aminah, Siti "Ami"'


async def test_a_kks_number_belongs_to_one_family(sessionmaker, tmp_path) -> None:
    from services.identity import Hasher
    from services.imports.beneficiaries import import_beneficiaries
    from tests.conftest import TEST_SECRET
    from tests.support.registry import load_registry

    hasher = Hasher(TEST_SECRET.encode())
    await load_registry(sessionmaker, hasher, tmp_path)
    clash = tmp_path / "clash.csv"
    clash.write_text(
        "nik,name,birth_date,phone,kks_number,village_code,programs,pkh_components\n"
        "3273016204950001,Rani Putri,1995-04-22,,5264221234567890,32.73.01.1001,BPNT,\n"
        "3273016204950002,Rina Putri,1995-04-22,,5264220000000001,32.73.01.1001,BPNT,\n"
        "3273016204950003,Rini Putri,1995-04-22,,5264220000000001,32.73.01.1001,BPNT,\n",
        encoding="utf-8",
    )
    report = await import_beneficiaries(sessionmaker, clash, hasher)
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, "kks_number: registered to another family"),
        (4, "kks_number: same KKS number as line 3"),
    ]
