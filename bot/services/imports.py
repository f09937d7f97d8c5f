"""Importing the beneficiary registry and disbursements from the ministry's CSV files.

Every row is validated first; when any row is wrong nothing is written and the
report lists the problems by line. Otherwise all rows are written in one
transaction with batched upserts, so a file is imported completely or not at all,
and importing the same file again changes nothing.

Personal data (NIK, phone, KKS number) never appears in a report or a log: error
reasons name the column and the rule, never the value. NIK and KKS are stored
only as keyed hashes plus their last four digits, phones only as keyed hashes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.services.identity import KKS_RE, Hasher, NikProblem, nik_problem, normalize_phone
from bot.services.regions import VILLAGE_CODE_RE, RegionDirectory, upsert_statement
from bot.services.wallet import credit_due, sync_disbursement_credits
from models import Beneficiary, Disbursement, PkhComponent
from models.base import utcnow

Progress = Callable[[int, int], None]

BENEFICIARY_COLUMNS = (
    "nik",
    "name",
    "birth_date",
    "phone",
    "kks_number",
    "village_code",
    "programs",
    "pkh_components",
)
DISBURSEMENT_COLUMNS = ("nik", "program", "period", "amount", "status", "date")
PROGRAMS = ("PKH", "BPNT")
PKH_COMPONENTS = (
    "ibu_hamil",
    "anak_usia_dini",
    "anak_sd",
    "anak_smp",
    "anak_sma",
    "disabilitas_berat",
    "lansia",
)
STATUSES = ("ditetapkan", "diproses", "disalurkan", "gagal")
PERIOD_RES = {
    "PKH": re.compile(r"^\d{4}-T[1-4]$"),
    "BPNT": re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"),
}
PERIOD_FORMATS = {"PKH": "YYYY-T1 to YYYY-T4", "BPNT": "YYYY-MM"}
NAME_MAX = 200
AMOUNT_MAX = 10**12
BATCH_SIZE = 1000  # rows per statement
ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NIK_REASONS = {
    NikProblem.FORMAT: "nik: not 16 digits",
    NikProblem.PROVINCE: "nik: unknown province code",
    NikProblem.DAY: "nik: birth day is not 01-31 (41-71 for women)",
    NikProblem.MONTH: "nik: birth month is not 01-12",
}

BENEFICIARY_FIELDS = (
    "nik_last4",
    "name",
    "birth_date",
    "phone_hash",
    "kks_hash",
    "kks_last4",
    "village_code",
    "is_pkh",
    "is_bpnt",
)
DISBURSEMENT_FIELDS = ("amount", "status", "date")


@dataclass(frozen=True)
class RowError:
    """One problem in an input file: the line (1 = header), the column, and why."""

    line: int
    column: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did, or the problems that stopped it."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the file had no errors (and was therefore imported)."""
        return not self.errors

    @property
    def total(self) -> int:
        """Rows imported (inserted + updated + unchanged)."""
        return self.inserted + self.updated + self.unchanged


Record = tuple[int, dict[str, str]]  # (line number, column -> raw text)


class ErrorList(list[RowError]):
    """Collects row errors while validating."""

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record one problem."""
        self.append(RowError(line, column, reason))


# --- reading -----------------------------------------------------------------------


def parse_csv_text(text: str, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a CSV text whose header must be exactly `columns`, with their line numbers."""
    errors = ErrorList()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header = next(reader, None)
    if header is None:
        errors.add(1, None, "empty file: a header line is required")
        return [], errors
    if [cell.strip().lower() for cell in header] != list(columns):
        errors.add(1, None, f"header must be: {','.join(columns)}")
        return [], errors
    records: list[Record] = []
    for fields in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in fields):
            continue
        if len(fields) != len(columns):
            errors.add(line, None, f"expected {len(columns)} fields, found {len(fields)}")
            continue
        records.append((line, dict(zip(columns, fields, strict=True))))
    return records, errors


def read_csv(path: Path, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a UTF-8 CSV file (a BOM is accepted) whose header must be `columns`."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return [], [RowError(line, None, "not UTF-8 text")]
    return parse_csv_text(text, columns)


def records_from_dicts(rows: Sequence[Mapping[str, str]]) -> list[Record]:
    """Records for rows built in memory, numbered as if they followed a header line."""
    return [(index + 2, dict(row)) for index, row in enumerate(rows)]


def chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> list[Sequence[Any]]:
    """`items` split into consecutive slices of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def by_position(errors: Sequence[RowError], columns: Sequence[str]) -> list[RowError]:
    """Errors ordered by line, then by the column's place in the file."""
    rank = {name: index for index, name in enumerate(columns)}
    return sorted(errors, key=lambda error: (error.line, rank.get(error.column or "", -1)))


# --- field rules -------------------------------------------------------------------


def nik_birth_date(nik: str) -> tuple[int, int, int]:
    """(day, month, two-digit year) encoded in a structurally valid NIK."""
    day = int(nik[6:8])
    return (day - 40 if day > 40 else day), int(nik[8:10]), int(nik[10:12])


def birth_date_matches_nik(nik: str, birth_date: date) -> bool:
    """Whether a birth date agrees with the NIK's DDMMYY (DD + 40 for women)."""
    return nik_birth_date(nik) == (birth_date.day, birth_date.month, birth_date.year % 100)


def parse_iso_date(text: str) -> date | None:
    """A `YYYY-MM-DD` date, or None."""
    if not ISO_DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_amount(text: str) -> tuple[int | None, str | None]:
    """A positive whole rupiah amount, or the reason it is not one."""
    if text.startswith("-"):
        return None, "amount: must be positive"
    if re.search(r"[.,]", text):
        return None, "amount: must be whole rupiah without decimals or separators"
    if not text.isdigit():
        return None, "amount: not a whole number"
    value = int(text)
    if value <= 0:
        return None, "amount: must be positive"
    if value > AMOUNT_MAX:
        return None, "amount: too large"
    return value, None


def parse_programs(text: str) -> tuple[set[str], str | None]:
    """The programs of a `PKH;BPNT` list, or the reason it is invalid."""
    parts = {part.strip().upper() for part in text.split(";") if part.strip()}
    if not parts:
        return set(), "programs: at least one of PKH, BPNT is required"
    if not parts <= set(PROGRAMS):
        return set(), "programs: only PKH and BPNT are allowed"
    return parts, None


def parse_components(text: str) -> tuple[dict[str, int], str | None]:
    """The counts of an `anak_sd:2;lansia:1` list, or the reason it is invalid."""
    counts: dict[str, int] = {}
    for part in (piece.strip() for piece in text.split(";")):
        if not part:
            continue
        key, colon, count = (item.strip() for item in part.partition(":"))
        key = key.lower()
        if key not in PKH_COMPONENTS:
            return {}, f"pkh_components: unknown component (allowed: {', '.join(PKH_COMPONENTS)})"
        if not colon or not count.isdigit() or int(count) <= 0:
            return {}, f"pkh_components: {key} needs a positive whole count (key:count)"
        if key in counts:
            return {}, f"pkh_components: {key} is listed twice"
        counts[key] = int(count)
    return counts, None


# --- beneficiaries -----------------------------------------------------------------


@dataclass
class BeneficiaryRecord:
    """A validated beneficiary row, already hashed for storage."""

    line: int
    nik_hash: str
    values: dict[str, Any]
    components: dict[str, int]


class _BeneficiaryChecker:
    """Validates beneficiary rows one by one, collecting errors."""

    def __init__(self, provinces: frozenset[str], hasher: Hasher, today: date) -> None:
        self.provinces = provinces
        self.hasher = hasher
        self.today = today
        self.errors = ErrorList()
        self.first_line: dict[str, int] = {}
        self.kks_first_line: dict[str, int] = {}
        self.villages: dict[int, str] = {}  # line -> well-formed village code

    def check(self, line: int, row: dict[str, str]) -> BeneficiaryRecord | None:
        """A record for a valid row, or None after recording its errors."""
        before = len(self.errors)
        nik = self._nik(line, row["nik"].strip())
        name = " ".join(row["name"].split())
        if not name or len(name) > NAME_MAX:
            self.errors.add(line, "name", f"name: must be 1-{NAME_MAX} characters")
        birth_date = self._birth_date(line, row["birth_date"].strip(), nik)
        phone = self._phone(line, row["phone"].strip())
        kks = row["kks_number"].strip()
        if kks and not KKS_RE.match(kks):
            self.errors.add(line, "kks_number", "kks_number: not 16 digits")
        elif kks in self.kks_first_line and nik is not None:  # a repeated row: one error
            self.errors.add(
                line,
                "kks_number",
                f"kks_number: same KKS number as line {self.kks_first_line[kks]}",
            )
        elif kks:
            self.kks_first_line[kks] = line
        village = row["village_code"].strip()
        if VILLAGE_CODE_RE.match(village):
            self.villages[line] = village
        else:
            self.errors.add(
                line, "village_code", "village_code: not a village code (PP.KK.CC.DDDD)"
            )
        programs, problem = parse_programs(row["programs"])
        if problem:
            self.errors.add(line, "programs", problem)
        components = self._components(line, row["pkh_components"], programs, problem)
        if len(self.errors) > before or nik is None or birth_date is None:
            return None
        values = {
            "nik_last4": nik[-4:],
            "name": name,
            "birth_date": birth_date,
            "phone_hash": self.hasher.phone(phone) if phone else None,
            "kks_hash": self.hasher.kks(kks) if kks else None,
            "kks_last4": kks[-4:] if kks else None,
            "village_code": village,
            "is_pkh": "PKH" in programs,
            "is_bpnt": "BPNT" in programs,
        }
        return BeneficiaryRecord(line, self.hasher.nik(nik), values, components)

    def _nik(self, line: int, nik: str) -> str | None:
        """The NIK when structurally valid and not seen earlier in the file."""
        problem = nik_problem(nik, self.provinces)
        if problem:
            self.errors.add(line, "nik", NIK_REASONS[problem])
            return None
        if nik in self.first_line:
            self.errors.add(line, "nik", f"nik: same NIK as line {self.first_line[nik]}")
            return None
        self.first_line[nik] = line
        return nik

    def _birth_date(self, line: int, text: str, nik: str | None) -> date | None:
        """The birth date when it is ISO, plausible and agrees with the NIK."""
        value = parse_iso_date(text)
        if value is None:
            self.errors.add(line, "birth_date", "birth_date: not a valid date (YYYY-MM-DD)")
        elif value > self.today:
            self.errors.add(line, "birth_date", "birth_date: in the future")
        elif value.year < 1900:
            self.errors.add(line, "birth_date", "birth_date: before 1900")
        elif nik is not None and not birth_date_matches_nik(nik, value):
            self.errors.add(line, "birth_date", "birth_date: does not match the NIK")
        else:
            return value
        return None

    def _phone(self, line: int, text: str) -> str | None:
        """The phone in E.164 (None when empty or invalid); short or unassigned numbers fail."""
        if not text:
            return None
        phone = normalize_phone(text)
        if phone is None:
            self.errors.add(line, "phone", "phone: not a valid phone number")
            return None
        return phone

    def _components(
        self, line: int, text: str, programs: set[str], programs_problem: str | None
    ) -> dict[str, int]:
        """The PKH components, allowed only for PKH families."""
        components, problem = parse_components(text)
        if problem:
            self.errors.add(line, "pkh_components", problem)
        elif components and not programs_problem and "PKH" not in programs:
            self.errors.add(line, "pkh_components", "pkh_components: only allowed with PKH")
        return components


async def validate_beneficiaries(
    session: AsyncSession, records: Sequence[Record], hasher: Hasher, today: date
) -> tuple[list[BeneficiaryRecord], list[RowError]]:
    """Check every beneficiary row; valid records and all errors (sorted by line)."""
    directory = await RegionDirectory.load(session)
    checker = _BeneficiaryChecker(directory.province_codes, hasher, today)
    valid = [record for line, row in records if (record := checker.check(line, row))]
    known = await directory.existing_villages(session, set(checker.villages.values()))
    for line, village in checker.villages.items():
        if village not in known:
            checker.errors.add(line, "village_code", "village_code: unknown village")
    await _check_kks_owners(session, valid, checker.errors)
    return valid, by_position(checker.errors, BENEFICIARY_COLUMNS)


async def _check_kks_owners(
    session: AsyncSession, records: Sequence[BeneficiaryRecord], errors: ErrorList
) -> None:
    """A KKS card belongs to one family: refuse a number registered to another NIK."""
    wanted = {r.values["kks_hash"]: r for r in records if r.values["kks_hash"]}
    for chunk in chunks(list(wanted)):
        rows = await session.execute(
            select(Beneficiary.kks_hash, Beneficiary.nik_hash).where(
                Beneficiary.kks_hash.in_(chunk)
            )
        )
        for kks_hash, nik_hash in rows:
            record = wanted[kks_hash]
            if nik_hash != record.nik_hash:
                errors.add(record.line, "kks_number", "kks_number: registered to another family")


async def _existing_beneficiaries(
    session: AsyncSession, hashes: Sequence[str]
) -> dict[str, tuple[int, dict[str, Any], dict[str, int]]]:
    """nik_hash -> (id, stored values, components) for the registered ones among `hashes`."""
    table = Beneficiary.__table__
    columns = [table.c.id, table.c.nik_hash, *(table.c[name] for name in BENEFICIARY_FIELDS)]
    rows = (await session.execute(select(*columns).where(table.c.nik_hash.in_(hashes)))).all()
    found = {
        row.nik_hash: (row.id, {name: getattr(row, name) for name in BENEFICIARY_FIELDS}, {})
        for row in rows
    }
    by_id = {entry[0]: entry[2] for entry in found.values()}
    if by_id:
        statement = select(PkhComponent.beneficiary_id, PkhComponent.component, PkhComponent.count)
        for beneficiary_id, component, count in await session.execute(
            statement.where(PkhComponent.beneficiary_id.in_(list(by_id)))
        ):
            by_id[beneficiary_id][component] = count
    return found


async def _write_beneficiary_batch(
    session: AsyncSession, batch: Sequence[BeneficiaryRecord], report: ImportReport
) -> None:
    """Upsert one batch of beneficiaries and replace the components of the changed ones."""
    existing = await _existing_beneficiaries(session, [record.nik_hash for record in batch])
    ids = {nik_hash: entry[0] for nik_hash, entry in existing.items()}
    changed: list[BeneficiaryRecord] = []
    for record in batch:
        stored = existing.get(record.nik_hash)
        if stored is None:
            report.inserted += 1
        elif stored[1] == record.values and stored[2] == record.components:
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        changed.append(record)
    if not changed:
        return
    now = utcnow()
    table = Beneficiary.__table__
    statement = upsert_statement(
        session,
        table,
        ["nik_hash"],
        BENEFICIARY_FIELDS,
        only_if_changed=False,
        also_set={"updated_at": now},
    ).returning(table.c.id, table.c.nik_hash)
    rows = [
        {"nik_hash": r.nik_hash, **r.values, "created_at": now, "updated_at": now} for r in changed
    ]
    for row in await session.execute(statement, rows):
        ids[row.nik_hash] = row.id
    await _replace_components(session, [(ids[r.nik_hash], r.components) for r in changed])


async def _replace_components(
    session: AsyncSession, families: Sequence[tuple[int, dict[str, int]]]
) -> None:
    """Make the stored PKH components of these families exactly the given ones."""
    await session.execute(
        delete(PkhComponent).where(PkhComponent.beneficiary_id.in_([fid for fid, _ in families]))
    )
    rows = [
        {"beneficiary_id": fid, "component": key, "count": count}
        for fid, components in families
        for key, count in components.items()
    ]
    if rows:
        await session.execute(insert(PkhComponent.__table__), rows)


async def _validate_then_write(
    sessionmaker: async_sessionmaker[AsyncSession],
    validate: Callable[[AsyncSession], Awaitable[tuple[list[Any], list[RowError]]]],
    write_batch: Callable[[AsyncSession, Any, ImportReport], Awaitable[None]],
    read_errors: Sequence[RowError],
    progress: Progress | None,
) -> ImportReport:
    """Validate every row, then write them in batches in one transaction, or write nothing."""
    async with sessionmaker() as session, session.begin():
        valid, errors = await validate(session)
        report = ImportReport(errors=sorted([*read_errors, *errors], key=lambda e: e.line))
        if not report.ok:
            return report
        done = 0
        for batch in chunks(valid):
            await write_batch(session, batch, report)
            done += len(batch)
            if progress:
                progress(done, len(valid))
    return report


async def import_beneficiary_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    today: date | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import beneficiary rows (all or nothing, one transaction)."""

    async def validate(session: AsyncSession) -> tuple[list[Any], list[RowError]]:
        return await validate_beneficiaries(session, records, hasher, today or date.today())

    return await _validate_then_write(
        sessionmaker, validate, _write_beneficiary_batch, read_errors, progress
    )


async def import_beneficiaries(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    today: date | None = None,
) -> ImportReport:
    """Import a beneficiaries CSV file (see DESIGN.md); nothing is written if a row is bad."""
    records, read_errors = read_csv(path, BENEFICIARY_COLUMNS)
    return await import_beneficiary_records(
        sessionmaker, records, hasher, progress=progress, today=today, read_errors=read_errors
    )


# --- disbursements -----------------------------------------------------------------


@dataclass
class DisbursementRecord:
    """A validated disbursement row, linked to its beneficiary."""

    line: int
    beneficiary_id: int
    program: str
    period: str
    amount: int
    status: str
    date: date
    id: int = 0  # set once written

    @property
    def key(self) -> tuple[int, str, str]:
        """The natural key: (beneficiary, program, period)."""
        return (self.beneficiary_id, self.program, self.period)

    def values(self) -> dict[str, Any]:
        """The stored columns that an import may change."""
        return {"amount": self.amount, "status": self.status, "date": self.date}


def _parse_disbursement(
    line: int, row: dict[str, str], errors: ErrorList, provinces: frozenset[str]
) -> DisbursementRecord | None:
    """The row as a record (beneficiary not yet set) when its fields are valid, else None."""
    before = len(errors)
    if problem := nik_problem(row["nik"].strip(), provinces):
        errors.add(line, "nik", NIK_REASONS[problem])
    program = row["program"].strip().upper()
    period = row["period"].strip()
    if program not in PROGRAMS:
        errors.add(line, "program", "program: must be PKH or BPNT")
    elif not PERIOD_RES[program].match(period):
        errors.add(line, "period", f"period: must be {PERIOD_FORMATS[program]} for {program}")
    amount, reason = parse_amount(row["amount"].strip())
    if reason:
        errors.add(line, "amount", reason)
    status = row["status"].strip().lower()
    if status not in STATUSES:
        errors.add(line, "status", f"status: must be one of {', '.join(STATUSES)}")
    when = parse_iso_date(row["date"].strip())
    if when is None:
        errors.add(line, "date", "date: not a valid date (YYYY-MM-DD)")
    if len(errors) > before or amount is None or when is None:
        return None
    return DisbursementRecord(line, 0, program, period, amount, status, when)


async def _registered(session: AsyncSession, hashes: set[str]) -> dict[str, tuple[int, bool, bool]]:
    """nik_hash -> (id, is_pkh, is_bpnt) for the registered ones among `hashes`."""
    found: dict[str, tuple[int, bool, bool]] = {}
    table = Beneficiary.__table__
    columns = (table.c.nik_hash, table.c.id, table.c.is_pkh, table.c.is_bpnt)
    for chunk in chunks(sorted(hashes)):
        for row in await session.execute(select(*columns).where(table.c.nik_hash.in_(chunk))):
            found[row.nik_hash] = (row.id, row.is_pkh, row.is_bpnt)
    return found


async def validate_disbursements(
    session: AsyncSession, records: Sequence[Record], hasher: Hasher
) -> tuple[list[DisbursementRecord], list[RowError]]:
    """Check every disbursement row against the rules and the registry."""
    provinces = (await RegionDirectory.load(session)).province_codes
    hashes = {
        line: hasher.nik(nik)
        for line, row in records
        if nik_problem(nik := row["nik"].strip(), provinces) is None
    }
    registry = await _registered(session, set(hashes.values()))
    errors = ErrorList()
    valid: list[DisbursementRecord] = []
    first_line: dict[tuple[int, str, str], int] = {}
    for line, row in records:
        record = _parse_disbursement(line, row, errors, provinces)
        found = registry.get(hashes.get(line, ""))
        if line in hashes and found is None:
            errors.add(line, "nik", "nik: not in the beneficiary registry")
        if record is None or found is None:
            continue
        record.beneficiary_id, is_pkh, is_bpnt = found
        if not (is_pkh if record.program == "PKH" else is_bpnt):
            reason = f"program: beneficiary is not enrolled in {record.program}"
            errors.add(line, "program", reason)
            continue
        if record.key in first_line:
            reason = f"period: same NIK, program and period as line {first_line[record.key]}"
            errors.add(line, "period", reason)
            continue
        first_line[record.key] = line
        valid.append(record)
    return valid, by_position(errors, DISBURSEMENT_COLUMNS)


async def _existing_disbursements(
    session: AsyncSession, batch: Sequence[DisbursementRecord]
) -> dict[tuple[int, str, str], tuple[int, dict[str, Any]]]:
    """(beneficiary, program, period) -> (id, stored values) for rows already imported."""
    table = Disbursement.__table__
    key_columns = tuple_(table.c.beneficiary_id, table.c.program, table.c.period)
    columns = [table.c.id, table.c.beneficiary_id, table.c.program, table.c.period]
    statement = select(*columns, *(table.c[name] for name in DISBURSEMENT_FIELDS)).where(
        table.c.beneficiary_id.in_({record.beneficiary_id for record in batch}),
        key_columns.in_([record.key for record in batch]),
    )
    return {
        (row.beneficiary_id, row.program, row.period): (
            row.id,
            {name: getattr(row, name) for name in DISBURSEMENT_FIELDS},
        )
        for row in await session.execute(statement)
    }


async def _write_disbursement_batch(
    session: AsyncSession, batch: Sequence[DisbursementRecord], report: ImportReport
) -> None:
    """Upsert one batch of disbursements and sync the wallets whose credit changes."""
    existing = await _existing_disbursements(session, batch)
    changed: list[DisbursementRecord] = []
    credit_changes: list[DisbursementRecord] = []
    for record in batch:
        stored = existing.get(record.key)
        old_due = (
            credit_due(record.program, stored[1]["status"], stored[1]["amount"]) if stored else 0
        )
        if stored is None:
            report.inserted += 1
        elif stored[1] == record.values():
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        changed.append(record)
        if credit_due(record.program, record.status, record.amount) != old_due:
            credit_changes.append(record)
    if not changed:
        return
    now = utcnow()
    table = Disbursement.__table__
    statement = upsert_statement(
        session,
        table,
        ["beneficiary_id", "program", "period"],
        DISBURSEMENT_FIELDS,
        only_if_changed=False,
        also_set={"updated_at": now},
    ).returning(table.c.id, table.c.beneficiary_id, table.c.program, table.c.period)
    rows = [
        {
            "beneficiary_id": r.beneficiary_id,
            "program": r.program,
            "period": r.period,
            **r.values(),
            "updated_at": now,
        }
        for r in changed
    ]
    ids = {
        (row.beneficiary_id, row.program, row.period): row.id
        for row in await session.execute(statement, rows)
    }
    for record in credit_changes:
        record.id = ids[record.key]
    await sync_disbursement_credits(session, credit_changes)


async def import_disbursement_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import disbursement rows (all or nothing, one transaction)."""

    async def validate(session: AsyncSession) -> tuple[list[Any], list[RowError]]:
        return await validate_disbursements(session, records, hasher)

    return await _validate_then_write(
        sessionmaker, validate, _write_disbursement_batch, read_errors, progress
    )


async def import_disbursements(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    hasher: Hasher,
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a disbursements CSV file (see DESIGN.md); nothing is written if a row is bad."""
    records, read_errors = read_csv(path, DISBURSEMENT_COLUMNS)
    return await import_disbursement_records(
        sessionmaker, records, hasher, progress=progress, read_errors=read_errors
    )
