"""Production findings 16-18: bad configuration, undated approvals, malformed CSV files.

- Finding 17: `ADMIN_IDS=` (how docker-compose passes an unset variable) crashed every
  command, and any setting of the wrong form ended in a pydantic traceback. Empty means
  none; a wrong value is one line naming the variable, and status 2.
- Finding 18: a disbursement `ditetapkan` (approved) or `diproses` without a date was
  refused, so a real export with the next stage's approvals was rejected whole.
- Finding 16: a malformed CSV (a cell over the csv module's size limit, a NUL byte, a
  file that is not UTF-8, a line with the wrong number of fields, digits int() refuses)
  ended in a traceback; it must be a row error with its line, and nothing imported.
"""

from __future__ import annotations

import asyncio
import csv
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot.cli import app
from infra.db import PROJECT_ROOT, alembic_config, upgrade_database
from infra.settings import InvalidSetting, load_settings
from models import (
    Beneficiary,
    Disbursement,
    EWarong,
    LedgerEntry,
    PartnerOrganisation,
    Region,
)
from services.bpnt.ewarongs import import_ewarongs
from services.identity import Hasher
from services.imports.beneficiaries import import_beneficiaries
from services.imports.csvfile import ImportReport, records_from_dicts
from services.imports.disbursements import (
    DISBURSEMENT_COLUMNS,
    import_disbursement_records,
    import_disbursements,
)
from services.napza.partners import import_partners
from services.regions import RegionFileError, import_regions
from tests.conftest import TEST_SECRET
from tests.support.clock import install_clock
from tests.support.people import linked_kpm
from tests.support.registry import SITI, load_registry

HASHER = Hasher(TEST_SECRET.encode())
FIELD_LIMIT = csv.field_size_limit()
BANSOS_BOT = Path(sys.executable).with_name("bansos-bot")
runner = CliRunner()


def errors_of(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(error.line, error.column, error.reason) for error in report.errors]


async def count(session: AsyncSession, model: type) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


# --- finding 17: configuration errors ------------------------------------------------

ADMIN_LINE = (
    "Configuration error: ADMIN_IDS must be Telegram user ids separated by commas (got 'abc')"
)


def _process_env(**values: str) -> dict[str, str]:
    """A clean environment (no BOT_TOKEN, DATABASE_URL, ... from the test run) plus `values`."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {**keep, "PYTHONPATH": str(PROJECT_ROOT), **values}


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.mark.parametrize(
    ("command", "variable", "value", "line"),
    [
        (["run"], "ADMIN_IDS", "abc", ADMIN_LINE),
        (["-m", "bot", "webhook"], "WEBHOOK_PORT", "x",
         "Configuration error: WEBHOOK_PORT must be a whole number (got 'x')"),
        (["import", "beneficiaries", "{file}"], "ADMIN_IDS", "12,abc",
         "Configuration error: ADMIN_IDS must be Telegram user ids separated by commas"
         " (got '12,abc')"),
    ],
)  # fmt: skip
def test_finding_17_a_bad_setting_is_one_line_and_status_2(
    tmp_path: Path, command: list[str], variable: str, value: str, line: str
) -> None:
    """The real process, as an operator starts it: one line, status 2, nothing done."""
    work = tmp_path / "work"
    work.mkdir()
    data = tmp_path / "people.csv"
    data.write_text("nik,name\n", encoding="utf-8")
    args = [arg.format(file=data) for arg in command]
    executable = [sys.executable] if args[0] == "-m" else [str(BANSOS_BOT)]
    env = _process_env(
        DATABASE_URL=f"sqlite+aiosqlite:///{work / 'bansos.db'}", **{variable: value}
    )
    result = _run([*executable, *args], work, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [line]
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert list(work.iterdir()) == []  # refused before a database or a key file exists


def test_finding_17_empty_admin_ids_means_none_for_the_real_cli(tmp_path: Path) -> None:
    """docker-compose passes `ADMIN_IDS: ${ADMIN_IDS:-}`, i.e. ADMIN_IDS= when unset."""
    env = _process_env(
        ADMIN_IDS="",
        METRICS_PORT="",
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bansos.db'}",
    )
    result = _run([str(BANSOS_BOT), "db", "upgrade"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Database is up to date." in result.stdout
    assert "Traceback" not in result.stderr and "Configuration error" not in result.stderr


def test_finding_17_make_run_probe_stops_with_the_one_line(tmp_path: Path) -> None:
    """`make run` must not fall through to the sandbox when a setting is wrong."""
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml and the lock: `install` has nothing to do
    env = _process_env(
        ADMIN_IDS="abc",
        # If the probe ever fell through, the sandbox refuses this database at once.
        SANDBOX_DATABASE_URL="postgresql+asyncpg://nobody@127.0.0.1:9/none",
    )
    result = _run(["make", "--no-print-directory", "-C", str(PROJECT_ROOT), "run",
                   f"STAMP={stamp}"], tmp_path, env)  # fmt: skip
    assert result.returncode != 0
    assert ADMIN_LINE in result.stderr.splitlines()
    assert "Error 2" in result.stderr  # the probe's own status, passed on by make
    assert "starting the local sandbox" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_finding_17_every_other_command_refuses_with_the_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the project
    data = tmp_path / "data.csv"
    data.write_text("code\n", encoding="utf-8")
    env = {
        "ADMIN_IDS": "abc",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bansos.db'}",
        "BOT_TOKEN": None,
        "SECRET_KEY": None,
    }
    commands = [
        ["worker"],
        ["sandbox"],
        ["db", "upgrade"],
        ["activation", "issue", "3204105507850003"],
        ["account", "unlink", "3204105507850003", "--reason", "x"],
        ["admin", "remove", "5"],
        ["partner", "deactivate", "IPWL-1"],
        ["ewarong", "deactivate", "EW-1"],
        ["import", "regions"],
        ["import", "disbursements", str(data)],
        ["import", "ewarongs", str(data)],
        ["import", "partners", str(data)],
        ["demo"],
        ["purge"],
        ["admin", "add", "5"],
        ["audit"],
        ["invite", "agent", "EW-1"],
        ["invite", "partner", "IPWL-1"],
        ["agent", "remove", "5", "EW-1"],
        ["broadcast", "status", "1"],
        ["export", "redemptions", "--ewarong", "EW-1", "--date", "2026-05-20"],
    ]
    for command in commands:
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 2, (command, result.output)
        assert isinstance(result.exception, InvalidSetting), (command, result.exception)
        assert result.stderr.splitlines() == [ADMIN_LINE], command
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data.csv"]


@pytest.mark.parametrize(
    ("value", "ids"),
    [("", []), ("   ", []), ("12345", [12345]), ("1, 2;3", [1, 2, 3]), ("[4,5]", [4, 5])],
)
def test_finding_17_admin_ids_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, ids: list[int]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADMIN_IDS", value)
    assert load_settings().admin_ids == ids


def test_finding_17_env_example_as_dot_env_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`.env.example` copied to `.env`, with the empty ADMIN_IDS= line switched on."""
    example = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8")
    assert "ADMIN_IDS=" in example
    (tmp_path / ".env").write_text(example.replace("# ADMIN_IDS=", "ADMIN_IDS="), "utf-8")
    monkeypatch.chdir(tmp_path)
    for name in ("ADMIN_IDS", "BOT_TOKEN", "METRICS_PORT", "WEBHOOK_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.admin_ids == [] and settings.bot_token is None


def test_finding_17_secrets_are_never_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WEBHOOK_PORT", "x")
    with pytest.raises(InvalidSetting) as refused:
        load_settings(database_url=["postgresql://bansos:hunter2@db/bansos"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "Configuration error: DATABASE_URL is not valid (Input should be a valid string)"
        " (value not shown); WEBHOOK_PORT must be a whole number (got 'x')"
    ]


def test_finding_17_every_entry_point_uses_load_settings() -> None:
    """Settings() straight from the environment bypasses the one-line error: only
    bot/settings.py may construct it (tests and benchmarks pass explicit values)."""
    sources = [*sorted((PROJECT_ROOT / "bot").rglob("*.py")), PROJECT_ROOT / "migrations/env.py"]
    sources.append(PROJECT_ROOT / "Makefile")
    direct = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in sources
        if path != PROJECT_ROOT / "bot/settings.py"
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"(?<![\w.])Settings\(", text)
    ]
    assert direct == [], f"use infra.settings.load_settings() instead of Settings() at {direct}"


# --- finding 18: approved stages without a date ---------------------------------------

SITI_NIK = SITI["nik"]
D_HEADER = ",".join(DISBURSEMENT_COLUMNS)


async def _people(sessionmaker: async_sessionmaker[AsyncSession], folder: Path) -> None:
    path = folder / "people.csv"
    path.write_text(PEOPLE_HEADER + "\n" + PEOPLE[0] + "\n" + PEOPLE[2] + "\n", "utf-8")
    report = await import_beneficiaries(sessionmaker, path, HASHER)
    assert report.ok, report.errors


async def _import_money(
    sessionmaker: async_sessionmaker[AsyncSession], folder: Path, via: str, *rows: str
) -> ImportReport:
    if via == "records":  # the path the demo data takes (rows built in memory)
        records = [dict(zip(DISBURSEMENT_COLUMNS, row.split(","), strict=True)) for row in rows]
        return await import_disbursement_records(sessionmaker, records_from_dicts(records), HASHER)
    path = folder / "money.csv"
    path.write_text("\n".join([D_HEADER, *rows]) + "\n", encoding="utf-8")
    return await import_disbursements(sessionmaker, path, HASHER)


@pytest.mark.parametrize("via", ["file", "records"])
async def test_finding_18_approved_and_processing_rows_may_have_no_date(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path, via: str
) -> None:
    await _people(sessionmaker, tmp_path)
    rows = [
        f"{SITI_NIK},PKH,2026-T1,1050000,disalurkan,2026-03-14",
        f"{SITI_NIK},PKH,2026-T2,1050000,ditetapkan,",
        f"{SITI_NIK},BPNT,2026-06,200000,diproses, ",
        f"{SITI_NIK},PKH,2026-T3,1050000,ditetapkan,2026-08-01",  # a date is still allowed
    ]
    report = await _import_money(sessionmaker, tmp_path, via, *rows)
    assert report.ok, report.errors
    assert (report.inserted, report.updated, report.unchanged) == (4, 0, 0)
    stored = {
        (d.program, d.period): (d.status, d.date)
        for d in await session.scalars(select(Disbursement))
    }
    assert stored == {
        ("PKH", "2026-T1"): ("disalurkan", date(2026, 3, 14)),
        ("PKH", "2026-T2"): ("ditetapkan", None),
        ("BPNT", "2026-06"): ("diproses", None),
        ("PKH", "2026-T3"): ("ditetapkan", date(2026, 8, 1)),
    }
    again = await _import_money(sessionmaker, tmp_path, via, *rows)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    # The stage is paid: now it has its date, and that is an update.
    paid = f"{SITI_NIK},PKH,2026-T2,1050000,disalurkan,2026-06-12"
    later = await _import_money(sessionmaker, tmp_path, via, paid)
    assert (later.inserted, later.updated, later.unchanged) == (0, 1, 0)


@pytest.mark.parametrize("via", ["file", "records"])
@pytest.mark.parametrize("status", ["disalurkan", "gagal"])
async def test_finding_18_paid_or_failed_rows_still_need_their_date(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    via: str,
    status: str,
) -> None:
    await _people(sessionmaker, tmp_path)
    report = await _import_money(
        sessionmaker,
        tmp_path,
        via,
        f"{SITI_NIK},PKH,2026-T2,1050000,ditetapkan,",
        f"{SITI_NIK},BPNT,2026-05,200000,{status},",
    )
    assert errors_of(report) == [
        (3, "date", f"date: required when status is {status} (YYYY-MM-DD)")
    ]
    assert await count(session, Disbursement) == 0
    assert await count(session, LedgerEntry) == 0


async def test_finding_18_the_database_keeps_the_rule_too(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await _people(sessionmaker, tmp_path)
    async with sessionmaker() as session:
        family = await session.scalar(select(Beneficiary.id))
        assert family is not None
        session.add(Disbursement(beneficiary_id=family, program="PKH", period="2026-T2",
                                 amount=1050000, status="ditetapkan", date=None))  # fmt: skip
        await session.commit()
        session.add(Disbursement(beneficiary_id=family, program="PKH", period="2026-T3",
                                 amount=1050000, status="disalurkan", date=None))  # fmt: skip
        with pytest.raises(IntegrityError):
            await session.commit()


async def test_finding_18_the_family_sees_an_undated_approved_stage_without_a_date(
    bot_app, sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await load_registry(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    money = tmp_path / "next-stage.csv"
    money.write_text(
        f"{D_HEADER}\n"
        f"{SITI_NIK},PKH,2026-T2,1050000,diproses,\n"  # had a date before: now none
        f"{SITI_NIK},PKH,2026-T3,1050000,ditetapkan,\n",
        encoding="utf-8",
    )
    report = await import_disbursements(sessionmaker, money, bot_app.ctx.hasher)
    assert (report.inserted, report.updated, report.unchanged) == (1, 1, 0), report.errors
    user = await linked_kpm(bot_app)
    status = (await user.press("Status bantuan"))[-1].text
    stages = [line for line in status.splitlines() if line.startswith("• Tahap")]
    assert stages == [
        "• Tahap 1: disalurkan ke rekening KKS — Rp1.050.000 (14 Maret 2026)",
        "• Tahap 2: diproses di bank — Rp1.050.000",
        "• Tahap 3: ditetapkan — Rp1.050.000",
        "• Tahap 4: belum ada informasi",
    ]
    assert "Tahap berikutnya: Tahap 2: diproses di bank — Rp1.050.000" in status
    assert "None" not in status


def test_finding_18_migration_0008_round_trip_on_sqlite(tmp_path: Path) -> None:
    """Up: undated approvals fit, paid rows still need a date. Down: the old schema
    gets the import day for the undated rows (it cannot hold none). Up again."""
    from alembic import command

    path = tmp_path / "migrate.db"
    url = f"sqlite+aiosqlite:///{path}"
    stamp = "2026-05-20 03:00:00.000000"

    def insert(db: sqlite3.Connection, period: str, status: str) -> None:
        db.execute(
            "INSERT INTO disbursements (beneficiary_id, program, period, amount, status, date,"
            " updated_at) VALUES (1, 'PKH', ?, 1050000, ?, NULL, ?)",
            (period, status, stamp),
        )

    upgrade_database(url)
    with closing(sqlite3.connect(path)) as db:
        db.execute("INSERT INTO regions (code, name, level) VALUES ('99', 'Uji', 1)")
        db.execute(
            "INSERT INTO beneficiaries (nik_hash, nik_last4, name, birth_date, village_code,"
            " is_pkh, is_bpnt, created_at, updated_at)"
            " VALUES ('h', '0003', 'Siti', '1985-07-15', '99', 1, 1, ?, ?)",
            (stamp, stamp),
        )
        insert(db, "2026-T2", "ditetapkan")
        with pytest.raises(sqlite3.IntegrityError, match="date_when_paid"):
            insert(db, "2026-T3", "disalurkan")
        db.commit()
    command.downgrade(alembic_config(url), "0007")
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT status, date FROM disbursements").fetchall() == [
            ("ditetapkan", "2026-05-20")
        ]
        with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
            insert(db, "2026-T4", "ditetapkan")
    upgrade_database(url)
    with closing(sqlite3.connect(path)) as db:
        insert(db, "2026-T4", "diproses")
        indexes = {row[1] for row in db.execute("PRAGMA index_list('disbursements')")}
    assert "ix_disbursements_beneficiary_id" in indexes


# --- finding 16: malformed CSV files --------------------------------------------------

PEOPLE_HEADER = "nik,name,birth_date,phone,kks_number,village_code,programs,pkh_components"
PEOPLE = (
    "3204105507850003,Siti Aminah,1985-07-15,081234567890,5264221234567890,"
    "32.04.10.2001,PKH;BPNT,anak_sd:2;lansia:1",
    "3578010903720001,Budi Santoso,1972-03-09,,,35.78.01.1002,BPNT,",
    "7371016311900002,Nur Aisyah,1990-11-23,085298765432,,73.71.01.1006,PKH,ibu_hamil:1",
)
BIG_REASON = (
    f"a field is longer than {FIELD_LIMIT} characters (is a closing quote missing?);"
    " the file was not read further"
)


@dataclass(frozen=True)
class Importer:
    """One CSV importer: three good rows (the middle one gets spoiled), a free-text
    column, how to run it, and the tables that must stay empty."""

    name: str
    header: str
    rows: tuple[str, str, str]
    text_column: str
    run: Callable[[async_sessionmaker[AsyncSession], Path], Awaitable[ImportReport]]
    tables: tuple[type, ...]
    needs_people: bool = False

    @property
    def width(self) -> int:
        return len(self.header.split(","))


IMPORTERS = [
    Importer(
        "beneficiaries",
        PEOPLE_HEADER,
        PEOPLE,
        "name",
        lambda maker, path: import_beneficiaries(maker, path, HASHER),
        (Beneficiary,),
    ),
    Importer(
        "disbursements",
        D_HEADER,
        (
            f"{SITI_NIK},BPNT,2026-01,200000,disalurkan,2026-01-05",
            f"{SITI_NIK},BPNT,2026-02,200000,disalurkan,2026-02-05",
            f"{SITI_NIK},PKH,2026-T1,1050000,disalurkan,2026-03-14",
        ),
        "status",
        lambda maker, path: import_disbursements(maker, path, HASHER),
        (Disbursement, LedgerEntry),
        needs_people=True,
    ),
    Importer(
        "ewarongs",
        "code,name,village_code,address,latitude,longitude,bank",
        (
            "BDG-01,Warung Bu Siti,32.73.01.1001,Jl. Diponegoro 22,-6.9025,107.6187,BRI",
            "BDG-02,e-Warong Alun-alun,32.73.01.1001,Jl. Asia Afrika 1,-6.9218,107.6070,BNI",
            "MKS-01,Warung Losari,73.71.01.1001,Jl. Penghibur 1,-5.1436,119.4075,BRI",
        ),
        "name",
        lambda maker, path: import_ewarongs(maker, path),
        (EWarong,),
    ),
    Importer(
        "partners",
        "code,name,kind,region_codes,phone,services",
        (
            "IPWL-3204,IPWL Bandung,ipwl,32.04;32.73,081234567890,Konseling",
            "RS-32,RSJ Jawa Barat,rumah_sakit,32,,Rawat inap",
            "BNN,BNN Pusat,lainnya,*,+62215000184,",
        ),
        "name",
        lambda maker, path: import_partners(maker, path),
        (PartnerOrganisation,),
    ),
]


def _spoil(importer: Importer, kind: str) -> tuple[bytes, list[tuple[int, str | None, str]]]:
    """The file with line 3 spoiled in the way `kind` says, and the report it must give."""
    fields = importer.rows[1].split(",")
    at = importer.header.split(",").index(importer.text_column)
    column, width = importer.text_column, importer.width
    tail: list[str] = []
    if kind == "huge cell":
        fields[at] = "x" * (FIELD_LIMIT + 1)
        expected = [(3, None, BIG_REASON)]
    elif kind == "unclosed quote":  # everything after the quote is one endless cell
        fields[at] = '"' + fields[at]
        tail = [f"filler line {n}," + "y" * 80 for n in range(2000)]
        expected = [(3, None, BIG_REASON)]
    elif kind == "NUL byte":
        fields[at] = fields[at][:3] + "\x00" + fields[at][3:]
        expected = [(3, column, f"{column}: contains control characters")]
    elif kind == "extra field":
        fields.append("extra")
        expected = [(3, None, f"expected {width} fields, found {width + 1}")]
    elif kind == "missing field":
        fields.pop()
        expected = [(3, None, f"expected {width} fields, found {width - 1}")]
    else:
        raise AssertionError(kind)
    lines = [importer.header, importer.rows[0], ",".join(fields), importer.rows[2], *tail]
    return ("\n".join(lines) + "\n").encode("utf-8"), expected


def _not_utf8(importer: Importer) -> bytes:
    fields = importer.rows[1].split(",")
    at = importer.header.split(",").index(importer.text_column)
    raw = [field.encode() for field in fields]
    raw[at] = fields[at].encode("latin-1", "replace") + b" \xe9\xff"  # Latin-1, not UTF-8
    lines = [importer.header.encode(), importer.rows[0].encode(), b",".join(raw),
             importer.rows[2].encode()]  # fmt: skip
    return b"\n".join(lines) + b"\n"


@pytest.fixture
async def clean_fake_regions(engine: AsyncEngine) -> AsyncIterator[None]:
    """The made-up province 99 is gone before and after (regions are kept between tests)."""
    statement = delete(Region).where(Region.code.like("99%"))
    async with engine.begin() as conn:
        await conn.execute(statement)
    yield
    async with engine.begin() as conn:
        await conn.execute(statement)


async def _refused_and_untouched(
    importer: Importer,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    content: bytes,
) -> ImportReport:
    if importer.needs_people:
        await _people(sessionmaker, tmp_path)
    path = tmp_path / f"{importer.name}.csv"
    path.write_bytes(content)
    report = await importer.run(sessionmaker, path)
    assert (report.inserted, report.updated, report.unchanged) == (0, 0, 0)
    for table in importer.tables:
        assert await count(session, table) == 0, table  # line 2 was good: not written either
    return report


@pytest.mark.parametrize(
    "kind", ["huge cell", "unclosed quote", "NUL byte", "extra field", "missing field"]
)
@pytest.mark.parametrize("importer", IMPORTERS, ids=lambda importer: importer.name)
async def test_finding_16_malformed_csv_is_a_row_error_with_its_line(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    importer: Importer,
    kind: str,
) -> None:
    content, expected = _spoil(importer, kind)
    report = await _refused_and_untouched(importer, sessionmaker, session, tmp_path, content)
    assert errors_of(report) == expected


@pytest.mark.parametrize("importer", IMPORTERS, ids=lambda importer: importer.name)
async def test_finding_16_a_file_that_is_not_utf8_names_its_line(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    importer: Importer,
) -> None:
    content = _not_utf8(importer)
    report = await _refused_and_untouched(importer, sessionmaker, session, tmp_path, content)
    assert errors_of(report) == [(3, None, "not UTF-8 text")]


@pytest.mark.parametrize(
    ("importer", "column", "cell", "reason"),
    [
        (IMPORTERS[1], "amount", "²", "amount: not a whole number"),  # isdigit() but not int()
        (IMPORTERS[1], "amount", "1" + "0" * 5000, "amount: too large"),  # over int()'s limit
        (IMPORTERS[0], "pkh_components", "anak_sd:²",
         "pkh_components: anak_sd needs a positive whole count (key:count)"),
        (IMPORTERS[0], "pkh_components", "anak_sd:" + "9" * 5000,
         "pkh_components: anak_sd count is over 99"),
        (IMPORTERS[0], "pkh_components", "anak_sd:3000000000",  # over PostgreSQL's integer
         "pkh_components: anak_sd count is over 99"),
    ],
    ids=["superscript-amount", "5001-digit-amount", "superscript-count", "5000-digit-count",
         "int32-overflow-count"],
)  # fmt: skip
async def test_finding_16_digits_int_refuses_are_row_errors(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    importer: Importer,
    column: str,
    cell: str,
    reason: str,
) -> None:
    fields = importer.rows[1].split(",")
    fields[importer.header.split(",").index(column)] = cell
    lines = [importer.header, importer.rows[0], ",".join(fields), importer.rows[2]]
    content = ("\n".join(lines) + "\n").encode()
    report = await _refused_and_untouched(importer, sessionmaker, session, tmp_path, content)
    assert errors_of(report) == [(3, column, reason)]


REGION_FILES = {
    "provinces.csv": "code,name\n99,Provinsi Uji\n",
    "regencies.csv": "code,province_code,name\n99.01,99,Kabupaten Uji\n",
    "districts.csv": "code,regency_code,name\n99.01.01,99.01,Kecamatan Uji\n",
}
VILLAGES = "code,district_code,name\n99.01.01.2001,99.01.01,Desa Satu\n"


@pytest.mark.usefixtures("clean_fake_regions")
@pytest.mark.parametrize(
    ("line3", "reason"),
    [
        (f"99.01.01.2002,99.01.01,{'x' * (FIELD_LIMIT + 1)}\n".encode(), str(FIELD_LIMIT)),
        (b'99.01.01.2002,99.01.01,"Desa Dua\n' + b"99.01.01.2003,99.01.01,Desa\n" * 6000,
         "closing quote"),
        (b"99.01.01.2002,99.01.01,Desa\x00Dua\n", "name contains control characters"),
        (b"99.01.01.2002,99.01.01,Desa D\xfca\n", "not UTF-8 text"),
        (b"99.01.01.2002,99.01.01,Desa Dua,extra\n", "expected 3 fields, found 4"),
    ],
    ids=["huge cell", "unclosed quote", "NUL byte", "not UTF-8", "extra field"],
)  # fmt: skip
async def test_finding_16_malformed_region_file_names_file_and_line(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    line3: bytes,
    reason: str,
) -> None:
    folder = tmp_path / "wilayah"
    folder.mkdir()
    for name, content in REGION_FILES.items():
        (folder / name).write_text(content, encoding="utf-8")
    (folder / "villages.csv").write_bytes(VILLAGES.encode() + line3)
    with pytest.raises(RegionFileError) as refused:
        await import_regions(sessionmaker, folder)
    assert (refused.value.file_name, refused.value.line) == ("villages.csv", 3)
    assert reason in refused.value.reason
    found = await session.scalars(select(Region.code).where(Region.code.like("99%")))
    assert list(found) == []


def _cli(database_url: str, *args: str) -> object:
    env = {"DATABASE_URL": database_url, "SECRET_KEY": TEST_SECRET, "COLUMNS": "200"}
    return runner.invoke(app, list(args), env=env)


@pytest.mark.parametrize("importer", IMPORTERS, ids=lambda importer: importer.name)
async def test_finding_16_the_cli_prints_the_row_error_and_exits_1(
    database_url: str,
    session: AsyncSession,
    tmp_path: Path,
    importer: Importer,
) -> None:
    fields = importer.rows[0].split(",")
    at = importer.header.split(",").index(importer.text_column)
    fields[at] = '"' + fields[at]  # a quote never closed, on the first row
    filler = [f"more {n}," + "z" * 80 for n in range(2000)]
    path = tmp_path / f"{importer.name}.csv"
    path.write_text("\n".join([importer.header, ",".join(fields), *filler]) + "\n", "utf-8")
    result = await asyncio.to_thread(_cli, database_url, "import", importer.name, str(path))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    output = result.output
    assert "nothing imported, 1 problem(s)" in output
    assert re.search(rf"│\s+2 │\s+│ a field is longer than {FIELD_LIMIT} characters", output)
    assert "Traceback" not in output
    for table in importer.tables:
        assert await count(session, table) == 0


@pytest.mark.usefixtures("clean_fake_regions")
async def test_finding_16_the_cli_names_the_region_file_and_line(
    database_url: str, session: AsyncSession, tmp_path: Path
) -> None:
    folder = tmp_path / "wilayah"
    folder.mkdir()
    for name, content in REGION_FILES.items():
        (folder / name).write_text(content, encoding="utf-8")
    (folder / "villages.csv").write_bytes(VILLAGES.encode() + b"99.01.01.2002,99.01.01,D\x00\n")
    result = await asyncio.to_thread(_cli, database_url, "import", "regions", str(folder))
    assert result.exit_code == 1, result.output
    output = result.output
    assert "Region file problem: villages.csv, line 3: name contains control characters" in output
    assert "Traceback" not in output
    found = await session.scalars(select(Region.code).where(Region.code.like("99%")))
    assert list(found) == []
