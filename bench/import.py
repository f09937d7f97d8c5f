"""Bulk import at database speed: the registry importer against a plain COPY.

    .venv/bin/python -m bench.import [--database-url URL] [--rows 1000000]
                                     [--small 10000] [--lookups 2000]
                                     [--disbursements] [--months 12]

1. Generates `--rows` valid beneficiary rows (NIKs whose birth-date digits match,
   real village codes from the regions table, KKS numbers, phones on 60% of rows,
   PKH components for PKH families) into a CSV file in a temporary folder.
2. Times `import_beneficiaries()` on that file (streamed, validated, hashed, staged
   by COPY, upserted in one transaction) against a plain `COPY ... FROM STDIN (FORMAT
   csv)` of the same file into a bare table with the same columns, in the same run
   (the COPY runs before and after the import; the mean is the baseline). Prints the
   ratio (aim: at most 3) and the importer's memory: the process's peak RSS, and the
   tracemalloc peak of re-importing the same file (every row unchanged).
3. Status lookups (the NIK lookup of account linking, then `status.aid_status()`,
   each in its own session): `--lookups` random families at `--small` rows, then at
   `--rows` rows; prints the ratio (aim: under 2).
4. With `--disbursements`: `--months` rows per family (PKH stages and BPNT months;
   12 by default, so 12,000,000 rows for 1,000,000 families), imported with
   `import_disbursements()` (BPNT `disalurkan` months credit the wallets) and timed
   against a plain COPY of the same file. The lookups then run with the
   disbursements in place, at both sizes.

The database (default `BENCH_IMPORT_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_import`) is created when
missing, migrated, loaded with the regions, and its registry tables are EMPTIED:
the script refuses a database whose name does not contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import date, timedelta
from pathlib import Path

import asyncpg
import sqlalchemy
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bench.redemption import ensure_database
from infra.db import create_engine, create_sessionmaker, upgrade_database
from models import Beneficiary, Region
from services.identity import Hasher
from services.imports.beneficiaries import BENEFICIARY_COLUMNS, import_beneficiaries
from services.imports.disbursements import DISBURSEMENT_COLUMNS, import_disbursements
from services.regions import REGION_DATA_DIR, import_regions, region_count
from services.registry import status

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_import"
HASHER = Hasher(b"bench-secret-not-for-production")
COMPONENTS = (
    "anak_sd:1",
    "anak_sd:2;lansia:1",
    "ibu_hamil:1;anak_usia_dini:1",
    "anak_smp:1;anak_sma:1",
    "disabilitas_berat:1",
)
MOBILE_PREFIXES = ("0812", "0813", "0821", "0852", "0857", "0878", "0895", "0896")
BPNT_MONTHS = [f"2025-{month:02d}" for month in range(1, 13)]
PKH_STAGES = [f"{year}-T{stage}" for year in (2024, 2025, 2026) for stage in range(1, 5)]
TODAY = date(2026, 6, 1)


# ---------------------------------------------------------------------------
# Data


def generate_people(path: Path, rows: int, villages: list[str], seed: int = 7) -> list[str]:
    """Write `rows` valid beneficiaries to `path`; returns their NIKs (for lookups)."""
    rng = random.Random(seed)
    serials: dict[str, int] = {}
    niks: list[str] = []
    born_from = date(1940, 1, 1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(BENEFICIARY_COLUMNS)
        for n in range(rows):
            village = villages[rng.randrange(len(villages))]
            district = village[:8].replace(".", "")
            serial = serials[district] = serials.get(district, 0) + 1
            born = born_from + timedelta(days=rng.randrange(60 * 365))
            day = born.day + (40 if rng.random() < 0.5 else 0)
            nik = f"{district}{day:02d}{born.month:02d}{born.year % 100:02d}{serial:04d}"
            phone = ""
            if rng.random() < 0.6:
                phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**7, 10**8)}"
            draw = rng.random()
            programs = "BPNT" if draw < 0.6 else ("PKH" if draw < 0.8 else "PKH;BPNT")
            components = rng.choice(COMPONENTS) if "PKH" in programs else ""
            kks = f"52{n:014d}"
            name = f"Warga Bench {n}"
            writer.writerow(
                [nik, name, born.isoformat(), phone, kks, village, programs, components]
            )
            niks.append(nik)
    return niks


def head(source: Path, target: Path, lines: int) -> None:
    """The first `lines` lines of `source` into `target`."""
    with open(source, encoding="utf-8") as reader, open(target, "w", encoding="utf-8") as out:
        for _, line in zip(range(lines), reader, strict=False):
            out.write(line)


def generate_money(people: Path, path: Path, months: int) -> int:
    """`months` disbursement rows per family of `people` (PKH stages, BPNT months)."""
    written = 0
    with (
        open(people, newline="", encoding="utf-8") as source,
        open(path, "w", newline="", encoding="utf-8") as handle,
    ):
        reader = csv.reader(source)
        next(reader)
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(DISBURSEMENT_COLUMNS)
        for n, row in enumerate(reader):
            nik, programs = row[0], row[6].split(";")
            plan: list[tuple[str, str]] = []
            if "PKH" in programs and "BPNT" in programs:
                pkh = (months + 2) // 3
                plan = [("PKH", p) for p in PKH_STAGES[:pkh]]
                plan += [("BPNT", p) for p in BPNT_MONTHS[: months - pkh]]
            elif "PKH" in programs:
                plan = [("PKH", p) for p in PKH_STAGES[:months]]
            else:
                plan = [("BPNT", p) for p in BPNT_MONTHS[:months]]
            for index, (program, period) in enumerate(plan):
                if program == "PKH":
                    amount = 750_000
                    month = (int(period[-1]) - 1) * 3 + 2
                    when = f"{period[:4]}-{month:02d}-14"
                else:
                    amount = 200_000
                    when = f"{period}-05"
                state = "gagal" if (n + index) % 50 == 0 else "disalurkan"
                writer.writerow([nik, program, period, amount, state, when])
                written += 1
    return written


# ---------------------------------------------------------------------------
# Database


async def reset(engine: AsyncEngine) -> None:
    """Empty the registry (and everything that hangs off it), then VACUUM ANALYZE."""
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE beneficiaries, ewarongs, audit_events RESTART IDENTITY CASCADE")
        )
        await conn.execute(text("DROP TABLE IF EXISTS bare_copy"))
    await vacuum(engine)


async def vacuum(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


async def ensure_regions(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """The village codes of the regions table (imported from data/wilayah when empty)."""
    async with sessionmaker() as session:
        if not await region_count(session):
            print("importing the Kemendagri regions (data/wilayah)")
            await import_regions(sessionmaker, REGION_DATA_DIR)
    async with sessionmaker() as session:
        villages = await session.scalars(
            select(Region.code).where(Region.level == 4).order_by(Region.code)
        )
        return list(villages)


BARE_TABLES = {
    "people": "nik text, name text, birth_date date, phone text, kks_number text, "
    "village_code text, programs text, pkh_components text",
    "money": "nik text, program text, period text, amount bigint, status text, date date",
}


async def plain_copy(engine: AsyncEngine, path: Path, kind: str) -> float:
    """Seconds to COPY the CSV file into a fresh bare table (same columns), committed."""
    async with engine.connect() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS bare_copy"))
        await conn.execute(text(f"CREATE TABLE bare_copy ({BARE_TABLES[kind]})"))
        await conn.commit()
        driver = (await conn.get_raw_connection()).driver_connection
        started = time.perf_counter()
        async with driver.transaction():
            await driver.copy_to_table(
                "bare_copy", source=str(path), format="csv", header=True, encoding="utf-8"
            )
        seconds = time.perf_counter() - started
        await conn.execute(text("DROP TABLE bare_copy"))
        await conn.commit()
    return seconds


async def timed_import(
    sessionmaker: async_sessionmaker[AsyncSession], path: Path, kind: str
) -> tuple[float, object]:
    importer = import_beneficiaries if kind == "people" else import_disbursements
    kwargs = {"today": TODAY} if kind == "people" else {}
    started = time.perf_counter()
    report = await importer(sessionmaker, path, HASHER, **kwargs)
    seconds = time.perf_counter() - started
    assert report.ok, report.errors[:5]
    return seconds, report


async def lookups(
    sessionmaker: async_sessionmaker[AsyncSession], niks: list[str], count: int, seed: int
) -> float:
    """Seconds per status lookup: NIK -> family (as linking does), then aid_status()."""
    rng = random.Random(seed)
    chosen = [rng.choice(niks) for _ in range(count)]

    async def one(nik: str) -> None:
        async with sessionmaker() as session:
            family = await session.scalar(
                select(Beneficiary).where(Beneficiary.nik_hash == HASHER.nik(nik))
            )
            assert family is not None
            await status.aid_status(session, family, TODAY)

    for nik in chosen[: max(50, count // 10)]:  # warm-up: connections, statement caches
        await one(nik)
    started = time.perf_counter()
    for nik in chosen:
        await one(nik)
    return (time.perf_counter() - started) / count


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


# ---------------------------------------------------------------------------


async def bench(args: argparse.Namespace, folder: Path) -> int:
    engine = create_engine(args.database_url, pool_size=2, max_overflow=0)
    sessionmaker = create_sessionmaker(engine)
    try:
        villages = await ensure_regions(sessionmaker)
        async with engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version"))
        print(
            f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
            f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, asyncpg "
            f"{asyncpg.__version__}, PostgreSQL {version}"
        )
        people = folder / "beneficiaries.csv"
        started = time.perf_counter()
        niks = generate_people(people, args.rows, villages)
        print(
            f"generated {args.rows:,} beneficiaries ({mb(people.stat().st_size)}) "
            f"in {time.perf_counter() - started:.1f}s"
        )
        small = folder / "beneficiaries-small.csv"
        head(people, small, args.small + 1)
        money = small_money = None
        if args.disbursements:
            money, small_money = folder / "disbursements.csv", folder / "disbursements-small.csv"
            started = time.perf_counter()
            money_rows = generate_money(people, money, args.months)
            generate_money(small, small_money, args.months)
            print(
                f"generated {money_rows:,} disbursements ({mb(money.stat().st_size)}) "
                f"in {time.perf_counter() - started:.1f}s"
            )

        # Lookups at the small size.
        await reset(engine)
        await timed_import(sessionmaker, small, "people")
        if small_money:
            await timed_import(sessionmaker, small_money, "money")
        await vacuum(engine)
        small_lookup = await lookups(sessionmaker, niks[: args.small], args.lookups, 1)

        # The import at full size, between two plain COPYs of the same file.
        await reset(engine)
        copy_before = await plain_copy(engine, people, "people")
        rss_before = peak_rss_mb()
        seconds, report = await timed_import(sessionmaker, people, "people")
        rss_after = peak_rss_mb()
        copy_after = await plain_copy(engine, people, "people")
        copy_seconds = statistics.mean([copy_before, copy_after])
        async with sessionmaker() as session:
            stored = await session.scalar(select(func.count()).select_from(Beneficiary))
        assert stored == args.rows, stored
        ratio = seconds / copy_seconds
        verdict = "meets" if ratio <= 3 else "MISSES"
        print(
            f"beneficiaries: import {seconds:.1f}s ({args.rows / seconds:,.0f} rows/s, {report}) "
            f"| plain COPY {copy_before:.2f}s / {copy_after:.2f}s | ratio {ratio:.1f} "
            f"({verdict} the aim of at most 3)"
        )
        print(
            f"memory: peak RSS of this process {rss_before:.0f} MB before the import, "
            f"{rss_after:.0f} MB after it"
        )
        tracemalloc.start()
        started = time.perf_counter()
        again = await import_beneficiaries(sessionmaker, people, HASHER, today=TODAY)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert again.ok and again.unchanged == args.rows, again
        print(
            f"re-import of the same file (under tracemalloc): {time.perf_counter() - started:.1f}s,"
            f" {again.unchanged:,} unchanged, tracemalloc peak {mb(peak)}"
        )

        if money:
            await vacuum(engine)
            copy_before = await plain_copy(engine, money, "money")
            rss_before = peak_rss_mb()
            seconds, report = await timed_import(sessionmaker, money, "money")
            rss_after = peak_rss_mb()
            copy_after = await plain_copy(engine, money, "money")
            copy_seconds = statistics.mean([copy_before, copy_after])
            print(
                f"disbursements: import {seconds:.1f}s ({money_rows / seconds:,.0f} rows/s, "
                f"{report}) | plain COPY {copy_before:.2f}s / {copy_after:.2f}s | ratio "
                f"{seconds / copy_seconds:.1f}; peak RSS {rss_before:.0f} -> {rss_after:.0f} MB"
            )
            async with engine.connect() as conn:
                for table in ("disbursements", "ledger_entries", "bpnt_wallets"):
                    count = await conn.scalar(text(f"SELECT count(*) FROM {table}"))
                    print(f"  {table}: {count:,} rows")

        await vacuum(engine)
        large_lookup = await lookups(sessionmaker, niks, args.lookups, 2)
        lookup_ratio = large_lookup / small_lookup
        verdict = "meets" if lookup_ratio < 2 else "MISSES"
        with_money = " with disbursements" if money else ""
        print(
            f"status lookup{with_money}: {small_lookup * 1000:.2f} ms at {args.small:,} rows, "
            f"{large_lookup * 1000:.2f} ms at {args.rows:,} rows; ratio {lookup_ratio:.2f} "
            f"({verdict} the aim of under 2)"
        )
    finally:
        await engine.dispose()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_IMPORT_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="beneficiaries")
    parser.add_argument("--small", type=int, default=10_000, help="rows for the lookup baseline")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--disbursements", action="store_true", help="also import disbursements")
    parser.add_argument("--months", type=int, default=12, help="disbursement rows per family")
    parser.add_argument("--phases", action="store_true", help="log the importer's phases")
    args = parser.parse_args(argv)
    url = make_url(args.database_url)
    if url.get_backend_name() != "postgresql":
        parser.error("the benchmark runs on PostgreSQL only")
    if "bench" not in (url.database or ""):
        parser.error(f"refusing to empty {url.database!r}: use a database named *bench*")
    if not 1 <= args.small <= args.rows or args.lookups < 1 or not 1 <= args.months <= 12:
        parser.error("need 1 <= --small <= --rows, --lookups >= 1 and 1 <= --months <= 12")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.phases:
        logging.basicConfig(format="  %(message)s")
        logging.getLogger("services.imports.staging").setLevel(logging.DEBUG)
    asyncio.run(ensure_database(args.database_url))
    upgrade_database(args.database_url)  # Alembic runs its own event loop
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        return asyncio.run(bench(args, Path(folder)))


if __name__ == "__main__":
    sys.exit(main())
