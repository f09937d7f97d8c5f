"""Bulk imports: streamed in batches, staged (COPY on PostgreSQL), all or nothing.

Files here are large enough to span several batches (the batch size is lowered so
the tests stay quick); the rules themselves are tested in test_imports.py.
"""

from __future__ import annotations

import csv
import gc
import tracemalloc
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import Beneficiary, BpntWallet, Disbursement, LedgerEntry, PkhComponent
from services.identity import Hasher, normalize_phone
from services.imports import csvfile, staging
from services.imports.beneficiaries import BENEFICIARY_COLUMNS, import_beneficiaries
from services.imports.csvfile import ImportReport, first_undecodable_line
from services.imports.disbursements import DISBURSEMENT_COLUMNS, import_disbursements
from services.imports.rules import birth_date_matches_nik, keyed_digest, phone_e164
from tests.conftest import TEST_SECRET

HASHER = Hasher(TEST_SECRET.encode())
VILLAGES = ("32.04.10.2001", "35.78.01.1002", "73.71.01.1006", "91.71.01.1001")


def family(n: int) -> list[str]:
    """A valid beneficiary row, unique for each n (NIK, KKS and phone)."""
    village = VILLAGES[n % len(VILLAGES)]
    born = date(1950, 1, 1) + timedelta(days=n % 18000)
    day = born.day + (40 if n % 2 else 0)
    serial = n // 18000 * 4 + n % 4  # unique with the birth date and sex per district
    nik = f"{village[:8].replace('.', '')}{day:02d}{born.month:02d}{born.year % 100:02d}"
    nik += f"{serial + 1:04d}"
    phone = f"0812{n:08d}" if n % 3 else ""
    programs = "PKH;BPNT" if n % 5 == 0 else "BPNT"
    components = "anak_sd:1;lansia:1" if n % 5 == 0 else ""
    kks = f"52{n:014d}"
    return [nik, f"Warga {n}", born.isoformat(), phone, kks, village, programs, components]


def write_csv(path: Path, header: tuple[str, ...], rows: Iterator[list[str]] | list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def people_file(folder: Path, count: int, *, last: list[str] | None = None) -> Path:
    rows: Any = (family(n) for n in range(count))
    if last is not None:
        rows = [*rows, last]
    return write_csv(folder / "people.csv", BENEFICIARY_COLUMNS, rows)


def money_rows(count: int) -> Iterator[list[str]]:
    """Three BPNT months per family n < count, two of them credited."""
    for n in range(count):
        for month, state in ((1, "disalurkan"), (2, "disalurkan"), (3, "diproses")):
            yield [
                family(n)[0],
                "BPNT",
                f"2026-{month:02d}",
                "200000",
                state,
                f"2026-{month:02d}-05",
            ]


async def count(session: AsyncSession, model: type) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


def errors_of(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(e.line, e.column, e.reason) for e in report.errors]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 1000 rows, so a few thousand rows already span several batches."""
    monkeypatch.setattr(staging, "STAGE_BATCH", 1000)


def test_rows_are_generated_valid_and_unique() -> None:
    rows = [family(n) for n in range(40_000)]
    assert len({row[0] for row in rows}) == len(rows)
    for row in rows[:2000]:
        assert birth_date_matches_nik(row[0], date.fromisoformat(row[2]))


# --- all or nothing over several batches ------------------------------------------


@pytest.mark.usefixtures("small_batches")
async def test_a_bad_last_row_of_a_large_file_leaves_the_database_unchanged(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    first = await import_beneficiaries(sessionmaker, people_file(tmp_path, 10), HASHER)
    assert (first.inserted, first.ok) == (10, True)
    before = (await session.scalars(select(Beneficiary.name).order_by(Beneficiary.id))).all()
    bad = family(6000)
    bad[2] = "1999-01-01"  # does not match the NIK
    report = await import_beneficiaries(sessionmaker, people_file(tmp_path, 6000, last=bad), HASHER)
    assert errors_of(report) == [(6002, "birth_date", "birth_date: does not match the NIK")]
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 0)
    session.expire_all()
    assert await count(session, Beneficiary) == 10
    assert (
        await session.scalars(select(Beneficiary.name).order_by(Beneficiary.id))
    ).all() == before
    assert await count(session, PkhComponent) == 4  # two PKH families, two components each


@pytest.mark.usefixtures("small_batches")
async def test_duplicates_in_far_apart_batches_are_found(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    same_nik = family(7)
    same_nik[1] = "Nama Lain"
    same_kks = family(4000)
    same_kks[4] = family(9)[4]
    rows = [*(family(n) for n in range(3500)), same_kks, same_nik]
    report = await import_beneficiaries(
        sessionmaker, write_csv(tmp_path / "dup.csv", BENEFICIARY_COLUMNS, rows), HASHER
    )
    assert errors_of(report) == [
        (3502, "kks_number", "kks_number: same KKS number as line 11"),
        (3503, "nik", "nik: same NIK as line 9"),
    ]
    assert await count(session, Beneficiary) == 0


@pytest.mark.usefixtures("small_batches")
async def test_a_bad_last_disbursement_writes_no_money(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    assert (await import_beneficiaries(sessionmaker, people_file(tmp_path, 1500), HASHER)).ok
    rows = [*money_rows(1500), [family(3)[0], "BPNT", "2026-02", "200000", "disalurkan", "x"]]
    path = write_csv(tmp_path / "money.csv", DISBURSEMENT_COLUMNS, rows)
    report = await import_disbursements(sessionmaker, path, HASHER)
    assert errors_of(report) == [(4502, "date", "date: not a valid date (YYYY-MM-DD)")]
    for model in (Disbursement, LedgerEntry, BpntWallet):
        assert await count(session, model) == 0
    repeated = [
        *money_rows(1500),
        [family(3)[0], "BPNT", "2026-02", "150000", "gagal", "2026-02-09"],
    ]
    report = await import_disbursements(
        sessionmaker, write_csv(path, DISBURSEMENT_COLUMNS, repeated), HASHER
    )
    assert errors_of(report) == [
        (4502, "period", "period: same NIK, program and period as line 12")
    ]
    assert await count(session, Disbursement) == 0


@pytest.mark.usefixtures("small_batches")
async def test_large_disbursement_file_credits_every_wallet_once(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    assert (await import_beneficiaries(sessionmaker, people_file(tmp_path, 1500), HASHER)).ok
    path = write_csv(tmp_path / "money.csv", DISBURSEMENT_COLUMNS, money_rows(1500))
    report = await import_disbursements(sessionmaker, path, HASHER)
    assert (report.inserted, report.updated, report.unchanged) == (4500, 0, 0)
    assert await count(session, LedgerEntry) == 3000
    assert await session.scalar(select(func.sum(BpntWallet.balance))) == 3000 * 200_000
    # Running balances per family, in ledger order: 200.000 then 400.000.
    after = (
        await session.execute(
            select(LedgerEntry.balance_after).order_by(LedgerEntry.beneficiary_id, LedgerEntry.id)
        )
    ).scalars()
    assert list(after) == [200_000, 400_000] * 1500
    # The same file again changes nothing; a changed month reverses its credit.
    assert (await import_disbursements(sessionmaker, path, HASHER)).unchanged == 4500
    changed = [
        [*row[:4], "gagal", row[5]] if row[0] == family(8)[0] and row[2] == "2026-01" else row
        for row in money_rows(1500)
    ]
    report = await import_disbursements(
        sessionmaker, write_csv(path, DISBURSEMENT_COLUMNS, changed), HASHER
    )
    assert (report.inserted, report.updated, report.unchanged) == (0, 1, 4499)
    assert await count(session, LedgerEntry) == 3001
    assert await session.scalar(select(func.sum(BpntWallet.balance))) == 2999 * 200_000


@pytest.mark.parametrize("batch", [1, 1000])
@pytest.mark.parametrize("giver_first", [True, False])
async def test_a_kks_number_given_up_in_the_file_is_not_free_for_another_family(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    batch: int,
    giver_first: bool,
) -> None:
    giver = family(1)
    assert (await import_beneficiaries(sessionmaker, people_file(tmp_path, 3), HASHER)).ok
    monkeypatch.setattr(staging, "STAGE_BATCH", batch)
    taker = family(500)
    taker[4] = giver[4]  # the KKS number the giver held when the file was made
    changed = [*giver[:4], f"52{999:014d}", *giver[5:]]
    rows = [changed, taker] if giver_first else [taker, changed]
    path = write_csv(tmp_path / "swap.csv", BENEFICIARY_COLUMNS, rows)
    report = await import_beneficiaries(sessionmaker, path, HASHER)
    line = 3 if giver_first else 2
    assert errors_of(report) == [(line, "kks_number", "kks_number: registered to another family")]
    session.expire_all()
    stored = await session.scalar(
        select(Beneficiary.kks_last4).where(Beneficiary.nik_hash == HASHER.nik(giver[0]))
    )
    assert stored == giver[4][-4:]
    assert await count(session, Beneficiary) == 3


# --- streaming and staging ---------------------------------------------------------


async def test_a_large_file_is_streamed_in_bounded_memory(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staging, "STAGE_BATCH", 1000)
    rows = 60_000
    path = people_file(tmp_path, rows)
    gc.collect()
    tracemalloc.start()
    try:
        report = await import_beneficiaries(sessionmaker, path, HASHER)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.inserted, report.ok) == (rows, True)
    assert await count(session, Beneficiary) == rows
    # Holding every row as it was read (a dict of texts per row) would alone take
    # about 50 MB; the streamed import holds two batches, the village codes and the
    # driver's buffers.
    assert peak < 30_000_000, f"peak {peak / 1e6:.1f} MB"


async def test_rows_are_staged_in_bulk_not_row_by_row(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(staging, "STAGE_BATCH", 2000)
    statements: list[str] = []
    copied: list[tuple[str, int]] = []
    original_copy = asyncpg.Connection.copy_records_to_table

    async def spy(self: asyncpg.Connection, table_name: str, **kwargs: Any) -> Any:
        records = list(kwargs.pop("records"))
        copied.append((table_name, len(records)))
        return await original_copy(self, table_name, records=records, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", spy)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        report = await import_beneficiaries(sessionmaker, people_file(tmp_path, 10_000), HASHER)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert (report.inserted, report.ok) == (10_000, True)
    assert await count(session, Beneficiary) == 10_000
    # 10,000 rows in 5 batches: some dozens of statements, never one per row.
    assert len(statements) < 200, len(statements)
    if engine.dialect.name == "postgresql":
        staged = sum(n for table, n in copied if table == "import_beneficiaries")
        assert staged == 10_000  # every row went through COPY ...
        assert not [s for s in statements if "INSERT INTO import_" in s]  # ... and none else
        assert not [s for s in statements if "VALUES" in s and "beneficiaries" in s]


async def test_too_many_problems_are_counted_and_the_first_kept(
    sessionmaker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csvfile, "MAX_ERRORS", 10)
    monkeypatch.setattr(staging, "STAGE_BATCH", 7)
    rows = [family(n) for n in range(30)]
    for row in rows[::2]:
        row[5] = "32.04.10"  # 15 bad village codes
    rows.append(family(1))  # and a repeated NIK on the last line
    path = write_csv(tmp_path / "bad.csv", BENEFICIARY_COLUMNS, rows)
    report = await import_beneficiaries(sessionmaker, path, HASHER)
    assert report.error_count == 16
    assert report.omitted_errors == 6
    assert [e.line for e in report.errors] == list(range(2, 21, 2))


def test_first_undecodable_line_across_chunks(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    lines = [f"baris {n}, é".encode() for n in range(500)]
    lines[321] = "Siti \xff".encode("latin-1")
    path.write_bytes(b"\n".join(lines) + b"\n")
    for chunk_size in (7, 64, 1000, 1 << 20):
        assert first_undecodable_line(path, chunk_size) == 322


async def test_a_file_that_is_not_utf8_late_reports_only_that(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = people_file(tmp_path, 3000)
    path.write_bytes(path.read_bytes() + ",".join(family(3001)).encode()[:-3] + b"\xe9\n")
    report = await import_beneficiaries(sessionmaker, path, HASHER)
    assert errors_of(report) == [(3002, None, "not UTF-8 text")]


# --- fast paths agree with the reference implementations ----------------------------


@settings(max_examples=400, deadline=None)
@given(
    text=st.from_regex(r"(?:0|62|\+62|\+620|0062|)8[0-9]{5,13}", fullmatch=True)
    | st.from_regex(r"\+?[0-9 ()\-]{0,18}", fullmatch=True)
)
def test_fast_phone_path_agrees_with_phonenumbers(text: str) -> None:
    assert phone_e164(text) == normalize_phone(text)


def test_fast_phone_path_on_every_mobile_length_and_prefix() -> None:
    for second in "0123456789":
        for length in range(6, 15):
            for prefix in ("0", "62", "+62"):
                text = f"{prefix}8{second}{'7' * length}"
                assert phone_e164(text) == normalize_phone(text), text


def test_keyed_digest_is_the_hashers_digest() -> None:
    digest = keyed_digest(HASHER)
    for kind, value in (("nik", "3204105507850003"), ("kks", "5264221234567890"), ("phone", "+62")):
        assert digest(kind, value) == HASHER.digest(kind, value)
