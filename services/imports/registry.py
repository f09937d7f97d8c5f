"""Importing the beneficiary registry and disbursements from the ministry's CSV files.

A file is read as a stream, in batches of `STAGE_BATCH` rows, so memory stays bounded
whatever its length. A worker thread reads and checks batch k+1 (the rules of one
row, keyed hashing) while the database stores batch k: checks against the registry
(KKS owners, registered and enrolled families), then COPY (PostgreSQL; batched
INSERTs on SQLite) into temporary tables and set-based upserts into the real ones.
Every row's keys are staged too, and the checks across the whole file (the same NIK,
KKS number or disbursement twice) run in SQL at the end. Everything happens in one
transaction: when any row is wrong the transaction is rolled back, so nothing is
written, and the report lists the problems by line (the first `MAX_ERRORS`, and how
many there are in all). Importing the same file again changes nothing.

Personal data (NIK, phone, KKS number) never appears in a report or a log: error
reasons name the column and the rule, never the value. NIK and KKS are stored
only as keyed hashes plus their last four digits, phones only as keyed hashes.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import itertools
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement

from infra.db import NUL
from models import Beneficiary, BpntWallet, Disbursement, LedgerEntry, PkhComponent, Region
from models.base import UtcDateTime, utcnow
from models.disbursement import UNDATED_STATUSES
from services.bpnt.ledger import (
    BPNT,
    CREDIT,
    CREDITED_STATUS,
    credit_due,
    sync_disbursement_credits,
)
from services.identity import KKS_RE, Hasher, NikProblem, nik_problem, normalize_phone
from services.regions import VILLAGE_CODE_RE

Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)

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
# A date is required once a disbursement is paid or failed; approved (ditetapkan) and at
# the bank (diproses) rows often have none yet (models.disbursement.UNDATED_STATUSES).
DATED_STATUSES = tuple(status for status in STATUSES if status not in UNDATED_STATUSES)
PERIOD_RES = {
    "PKH": re.compile(r"^\d{4}-T[1-4]$"),
    "BPNT": re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"),
}
PERIOD_FORMATS = {"PKH": "YYYY-T1 to YYYY-T4", "BPNT": "YYYY-MM"}
NAME_MAX = 200
AMOUNT_MAX = 10**12
BATCH_SIZE = 1000  # rows per statement (e-Warong and partner imports)
STAGE_BATCH = 20_000  # rows read, checked and staged at a time (bounds the memory)
MAX_ERRORS = 1000  # errors kept in a report (the earliest lines); the rest are counted
ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ASCII_DIGITS_RE = re.compile(r"^[0-9]+$")
COMPONENT_COUNT_MAX = 99  # members of one family in one component
# Indonesian mobile numbers typed as 08..., 628... or +628...: valid by the mobile
# pattern of phonenumbers' metadata for ID (`8[1-35-9]\d{7,10}`), so they skip the
# (slow) full parse; tests check that this agrees with `normalize_phone`.
MOBILE_RE = re.compile(r"(?:0|\+?62)(8[1-35-9]\d{7,10})")
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

# What the write phase does with a staged row.
SAME, INSERT, UPDATE = 0, 1, 2


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
    omitted_errors: int = 0  # problems found beyond the `errors` kept in the report

    @property
    def ok(self) -> bool:
        """True when the file had no errors (and was therefore imported)."""
        return not self.errors

    @property
    def total(self) -> int:
        """Rows imported (inserted + updated + unchanged)."""
        return self.inserted + self.updated + self.unchanged

    @property
    def error_count(self) -> int:
        """All problems found, including those left out of `errors`."""
        return len(self.errors) + self.omitted_errors


Report = ImportReport
Record = tuple[int, dict[str, str]]  # (line number, column -> raw text)
Row = tuple[int, list[str]]  # (line number, fields in the order of the columns)


class ErrorList(list[RowError]):
    """Collects row errors while validating."""

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record one problem."""
        self.append(RowError(line, column, reason))


class BoundedErrors:
    """Row errors of a streamed import: keeps the first `limit` by position, counts all."""

    def __init__(self, columns: Sequence[str], limit: int | None = None) -> None:
        self.rank = {name: index for index, name in enumerate(columns)}
        self.limit = limit or MAX_ERRORS
        self.items: list[RowError] = []
        self.count = 0
        self.fatal = False
        self.lock = threading.Lock()  # rows are checked in a worker thread

    def __bool__(self) -> bool:
        return self.count > 0

    def _key(self, error: RowError) -> tuple[int, int]:
        return (error.line, self.rank.get(error.column or "", -1))

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record one problem (ignored once the file could not be read at all)."""
        with self.lock:
            if self.fatal:
                return
            self.count += 1
            self.items.append(RowError(line, column, reason))
            if len(self.items) >= 2 * self.limit:
                self._trim()

    def discard(self, line: int, column: str, reason: str) -> None:
        """Forget a problem recorded earlier (when a later check explains the row better)."""
        error = RowError(line, column, reason)
        with self.lock:
            if error in self.items:
                self.items.remove(error)
                self.count -= 1

    def stop(self, line: int, reason: str) -> None:
        """The file cannot be read on: this problem alone is reported."""
        with self.lock:
            self.items, self.count, self.fatal = [RowError(line, None, reason)], 1, True

    def _trim(self) -> None:
        self.items.sort(key=self._key)
        del self.items[self.limit :]

    def into(self, report: ImportReport) -> ImportReport:
        """Put the kept errors (sorted by line, then column) and the count into `report`."""
        with self.lock:
            self._trim()
        report.errors = list(self.items)
        report.omitted_errors = self.count - len(self.items)
        return report


# --- reading -----------------------------------------------------------------------


def parse_csv_text(text: str, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a CSV text whose header must be exactly `columns`, with their line numbers."""
    errors = BoundedErrors(columns, limit=10**9)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    rows = list(csv_rows(reader, columns, errors, nul=NUL in text))
    return [(line, dict(zip(columns, fields, strict=True))) for line, fields in rows], errors.items


def read_csv(path: Path, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a UTF-8 CSV file (a BOM is accepted) whose header must be `columns`."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return [], [RowError(line, None, "not UTF-8 text")]
    return parse_csv_text(text, columns)


def csv_rows(
    reader: Any, columns: Sequence[str], errors: BoundedErrors, *, nul: bool = True
) -> Iterator[Row]:
    """The rows of a csv.reader after checking the header; blank lines are skipped.

    Every importer reads through here, so a malformed file is a row error with its line,
    never an exception: a cell holding NUL (PostgreSQL's text cannot store one) is
    reported and yielded without it, so the row's other rules are still checked; text
    the csv module cannot split (a cell over its size limit, usually a quote that is
    never closed) is reported at the line where that row starts, and reading stops.
    `nul=False` skips the NUL check when the caller knows the text has none."""
    line = 0  # the last line read whole: a row that cannot be read starts after it
    try:
        header = next(reader, None)
        if header is None:
            errors.add(1, None, "empty file: a header line is required")
            return
        if [cell.strip().lower() for cell in header] != list(columns):
            errors.add(1, None, f"header must be: {','.join(columns)}")
            return
        width = len(columns)
        line = reader.line_num
        for fields in reader:
            line = reader.line_num
            if len(fields) == width and (fields[0].strip() or any(cell.strip() for cell in fields)):
                if nul and any(NUL in cell for cell in fields):
                    fields = _without_nul(line, columns, fields, errors)
                yield line, fields
            elif any(cell.strip() for cell in fields):
                errors.add(line, None, f"expected {width} fields, found {len(fields)}")
    except csv.Error as error:
        errors.add(line + 1, None, csv_problem(error))


def _without_nul(
    line: int, columns: Sequence[str], fields: list[str], errors: BoundedErrors
) -> list[str]:
    """Report each cell holding NUL (as the other importers word control characters)."""
    for column, cell in zip(columns, fields, strict=True):
        if NUL in cell:
            errors.add(line, column, f"{column}: contains control characters")
    return [cell.replace(NUL, "") for cell in fields]


def csv_problem(error: csv.Error) -> str:
    """Why the csv module could not split the text, for a report (never the cell itself)."""
    if "field larger than field limit" in str(error):
        return (
            f"a field is longer than {csv.field_size_limit()} characters (is a closing quote"
            " missing?); the file was not read further"
        )
    return f"not valid CSV ({error}); the file was not read further"


def stream_csv(path: Path, columns: Sequence[str], errors: BoundedErrors) -> Iterator[Row]:
    """The rows of a UTF-8 CSV file, read lazily; a file that is not UTF-8 stops the import."""
    nul = file_contains(path, NUL.encode())
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield from csv_rows(csv.reader(handle), columns, errors, nul=nul)
    except UnicodeDecodeError:
        errors.stop(first_undecodable_line(path), "not UTF-8 text")


def file_contains(path: Path, needle: bytes, chunk_size: int = 1 << 20) -> bool:
    """Whether the file holds the byte string (one byte, or short: chunks overlap by it)."""
    keep = len(needle) - 1
    pending = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            data = pending + chunk
            if needle in data:
                return True
            pending = data[-keep:] if keep else b""
    return False


def first_undecodable_line(path: Path, chunk_size: int = 1 << 20) -> int:
    """The line holding the first byte sequence that is not UTF-8 (read in chunks)."""
    lines, pending = 1, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            data = pending + chunk
            cut = data.rfind(b"\n") + 1  # a newline byte never sits inside a UTF-8 sequence
            piece, pending = data[:cut], data[cut:]
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as error:
                return lines + piece[: error.start].count(b"\n")
            lines += piece.count(b"\n")
    return lines


def count_data_lines(path: Path, chunk_size: int = 1 << 20) -> int:
    """Lines after the header (an estimate of the rows, for progress bars)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)


def records_from_dicts(rows: Sequence[Mapping[str, str]]) -> list[Record]:
    """Records for rows built in memory, numbered as if they followed a header line."""
    return [(index + 2, dict(row)) for index, row in enumerate(rows)]


def rows_from_records(records: Iterable[Record], columns: Sequence[str]) -> Iterator[Row]:
    """Records (column -> text) as rows in column order."""
    for line, row in records:
        yield line, [row[column] for column in columns]


def chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> list[Sequence[Any]]:
    """`items` split into consecutive slices of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


def batched(rows: Iterable[Row], size: int | None = None) -> Iterator[list[Row]]:
    """Consecutive lists of at most `size` (default STAGE_BATCH) rows, pulled lazily."""
    iterator, size = iter(rows), size or STAGE_BATCH
    while batch := list(itertools.islice(iterator, size)):
        yield batch


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
    if not ASCII_DIGITS_RE.match(text):  # str.isdigit() also passes "²", which int() refuses
        return None, "amount: not a whole number"
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(AMOUNT_MAX)):  # and int() of thousands of digits raises
        return None, "amount: too large"
    value = int(digits)
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
        # ASCII digits only: str.isdigit() also passes "²", which int() refuses.
        digits = count.lstrip("0") if colon and ASCII_DIGITS_RE.match(count) else ""
        if not digits:  # not a whole number, or zero
            return {}, f"pkh_components: {key} needs a positive whole count (key:count)"
        if len(digits) > len(str(COMPONENT_COUNT_MAX)) or int(digits) > COMPONENT_COUNT_MAX:
            return {}, f"pkh_components: {key} count is over {COMPONENT_COUNT_MAX}"
        if key in counts:
            return {}, f"pkh_components: {key} is listed twice"
        counts[key] = int(digits)
    return counts, None


def phone_e164(text: str) -> str | None:
    """`normalize_phone`, with a fast path for the usual Indonesian mobile numbers."""
    if match := MOBILE_RE.fullmatch(text):
        return "+62" + match.group(1)
    return normalize_phone(text)


def keyed_digest(hasher: Hasher) -> Callable[[str, str], str]:
    """`hasher.digest` as a one-call HMAC; falls back to `hasher.digest` if they ever differ."""
    key = hasher.key

    def digest(kind: str, value: str) -> str:
        return hmac.digest(key, f"{kind}:{value}".encode(), "sha256").hex()

    probe = ("nik", "3204105507850003")
    return digest if digest(*probe) == hasher.digest(*probe) else hasher.digest


class _Memo(dict[str, Any]):
    """A small cache of parse results for columns with few distinct values."""

    def __init__(self, parse: Callable[[str], Any], limit: int = 50_000) -> None:
        super().__init__()
        self.parse = parse
        self.limit = limit

    def __missing__(self, key: str) -> Any:
        value = self.parse(key)
        if len(self) < self.limit:
            self[key] = value
        return value


# --- staging tables and the batch pipeline -----------------------------------------

STAGE_METADATA = MetaData()
HashText = String().with_variant(String(collation="C"), "postgresql")


def _stage(name: str, *columns: Column[Any]) -> Table:
    return Table(
        name, STAGE_METADATA, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP"
    )


# Every row of a beneficiaries file with a well-formed NIK or KKS number: the checks
# across the whole file run over it at the end.
PEOPLE_KEYS = _stage(
    "import_beneficiary_keys",
    Column("line", Integer),
    Column("nik_hash", HashText),
    Column("kks_hash", HashText),
)
# The rows of one batch that insert or change a family (emptied after each batch).
PEOPLE_BATCH = _stage(
    "import_beneficiaries",
    Column("line", Integer),
    Column("nik_hash", HashText),
    Column("nik_last4", String),
    Column("name", String),
    Column("birth_date", Date),
    Column("phone_hash", String),
    Column("kks_hash", HashText),
    Column("kks_last4", String),
    Column("village_code", String),
    Column("is_pkh", Boolean),
    Column("is_bpnt", Boolean),
    Column("action", SmallInteger),
    Column("beneficiary_id", BigInteger),
)
COMPONENT_BATCH = _stage(
    "import_pkh_components",
    Column("nik_hash", HashText),
    Column("component", String),
    Column("count", Integer),
)
# KKS numbers an earlier batch took away from a family: no other family may take them.
RELEASED_KKS = _stage(
    "import_released_kks",
    Column("kks_hash", HashText),
    Column("nik_hash", HashText),
)
MONEY_KEYS = _stage(
    "import_disbursement_keys",
    Column("line", Integer),
    Column("beneficiary_id", BigInteger),
    Column("program", String),
    Column("period", String),
)
MONEY_BATCH = _stage(
    "import_disbursements",
    Column("line", Integer),
    Column("beneficiary_id", BigInteger),
    Column("program", String),
    Column("period", String),
    Column("amount", BigInteger),
    Column("status", String),
    Column("date", Date),
    Column("action", SmallInteger),
)
NEW_CREDITS = _stage(
    "import_new_credits",
    Column("id", BigInteger),
    Column("beneficiary_id", BigInteger),
    Column("amount", BigInteger),
    Column("period", String),
)


class Stager:
    """Temporary tables on the import's connection, filled by COPY on PostgreSQL."""

    def __init__(self, connection: AsyncConnection, tables: Sequence[Table]) -> None:
        self.connection = connection
        self.tables = tables
        self.postgres = connection.dialect.name == "postgresql"
        self.driver: Any = None

    async def __aenter__(self) -> Stager:
        def create(sync: Any) -> None:
            for table in self.tables:
                table.drop(sync, checkfirst=True)  # SQLite: left by an earlier import
                table.create(sync)

        await self.connection.run_sync(create)
        if self.postgres:
            self.driver = (await self.connection.get_raw_connection()).driver_connection
            assert self.driver.is_in_transaction(), "COPY must run inside the import transaction"
            await self.connection.execute(text("SET LOCAL work_mem = '256MB'"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.postgres and not self.connection.closed:  # PostgreSQL drops them on commit
            await self.connection.run_sync(
                lambda sync: [table.drop(sync, checkfirst=True) for table in self.tables]
            )

    async def load(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows (tuples in the table's column order)."""
        if not rows:
            return
        if self.postgres:
            await self.driver.copy_records_to_table(
                table.name, records=rows, columns=[column.name for column in table.columns]
            )
        else:  # plain executemany; dates as SQLAlchemy stores them on SQLite (ISO text)
            names = [column.name for column in table.columns]
            dates = [i for i, column in enumerate(table.columns) if isinstance(column.type, Date)]
            if dates:
                rows = [list(row) for row in rows]
                for row in rows:
                    for i in dates:
                        if row[i] is not None:
                            row[i] = row[i].isoformat()
            marks = ", ".join("?" * len(names))
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            await self.connection.exec_driver_sql(sql, [tuple(row) for row in rows])

    async def clear(self, *tables: Table) -> None:
        """Empty per-batch tables."""
        if self.postgres:
            await self.connection.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)}"))
        else:
            for table in tables:
                await self.connection.execute(delete(table))


async def pipeline(
    rows: Iterable[Row],
    check: Callable[[list[Row]], Any],
    store: Callable[[Any], Awaitable[None]],
    progress: Progress | None,
    total: int,
) -> None:
    """Read and check batch k+1 in a thread while the database stores batch k.

    Reading and checking is Python work; storing mostly waits for the database, which
    meanwhile runs on another core. Only `store` touches the database."""
    batches = batched(rows)

    def next_checked() -> tuple[int, Any] | None:
        batch = next(batches, None)
        return None if batch is None else (len(batch), check(batch))

    pending = asyncio.ensure_future(asyncio.to_thread(next_checked))
    done = 0
    try:
        while (item := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next_checked))
            size, checked = item
            await store(checked)
            done += size
            if progress:
                progress(done, max(total, done))
    finally:
        if not pending.done():  # never leave the thread reading the file on its own
            with suppress(Exception):
                await pending


def _among(connection: AsyncConnection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`: one array parameter on PostgreSQL, a list elsewhere."""
    if connection.dialect.name == "postgresql":
        array = postgresql.ARRAY(BigInteger if isinstance(values[0], int) else String)
        return column == any_(bindparam(None, value=list(values), type_=array))
    return column.in_(values)


def _repeats(keys: Iterable[Any]) -> bool:
    """Whether a key occurs twice (within one batch)."""
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            return True
        seen.add(key)
    return False


async def _province_codes(connection: AsyncConnection) -> frozenset[str]:
    """The province codes (a NIK starts with one)."""
    return frozenset(await connection.scalars(select(Region.code).where(Region.level == 1)))


@contextmanager
def _phase(name: str) -> Iterator[None]:
    """Log how long a phase of an import took (DEBUG; no row data)."""
    started = time.perf_counter()
    yield
    log.debug("%s: %.2fs", name, time.perf_counter() - started)


def _now(now: Any) -> Any:
    return literal(now, UtcDateTime())


def dialect_insert_for(connection: AsyncConnection) -> Callable[[Table], Any]:
    """The ON CONFLICT-capable `insert` of the connection's dialect."""
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


async def _run_streamed(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession, AsyncConnection, ImportReport], Awaitable[None]],
    errors: BoundedErrors,
) -> ImportReport:
    """Run `work` in one transaction; commit only when no problem was found.

    Batches are written as they come, so that the database works while the next
    batch is checked; a problem found later rolls all of them back."""
    report = ImportReport()
    async with sessionmaker() as session:
        connection = await session.connection()
        await work(session, connection, report)
        if errors:
            await session.rollback()
            return errors.into(ImportReport())
        await session.commit()
    return report


async def _count_repeats(
    connection: AsyncConnection, repeated: Any, errors: BoundedErrors, found: int
) -> None:
    """Count (without fetching) the repeated rows beyond the ones reported."""
    if found < errors.limit:
        return
    rest = await connection.scalar(select(func.count()).select_from(repeated.subquery())) or 0
    errors.count += rest - found


# --- beneficiaries -----------------------------------------------------------------


class _BeneficiaryChecker:
    """Checks beneficiary rows one by one (the rules that need no other row)."""

    def __init__(
        self,
        provinces: frozenset[str],
        villages: set[str],
        hasher: Hasher,
        today: date,
        errors: BoundedErrors,
    ) -> None:
        self.provinces = provinces
        self.villages = villages
        self.digest = keyed_digest(hasher)
        self.today = today
        self.errors = errors
        self.dates = _Memo(parse_iso_date)
        self.programs = _Memo(parse_programs)
        self.components = _Memo(parse_components)

    def check_batch(self, batch: list[Row]) -> list[Checked]:
        """Check a batch (runs in a worker thread)."""
        return [self.check(line, fields) for line, fields in batch]

    def check(self, line: int, fields: list[str]) -> tuple[list[Any], dict[str, int], bool]:
        """(staged row, components, valid): the row in PEOPLE_BATCH's column order.

        An invalid row is still staged with its NIK and KKS hashes (when well formed),
        so the checks across the file can point at it."""
        errors = self.errors
        before = errors.count
        nik_raw, name, birth_raw, phone_raw, kks, village, programs_raw, components_raw = fields
        nik: str | None = nik_raw.strip()
        if problem := nik_problem(nik, self.provinces):  # type: ignore[arg-type]
            errors.add(line, "nik", NIK_REASONS[problem])
            nik = None
        name = " ".join(name.split())
        if not name or len(name) > NAME_MAX:
            errors.add(line, "name", f"name: must be 1-{NAME_MAX} characters")
        birth_date = self._birth_date(line, birth_raw.strip(), nik)
        phone = self._phone(line, phone_raw.strip())
        kks = kks.strip()
        if kks and not KKS_RE.match(kks):
            errors.add(line, "kks_number", "kks_number: not 16 digits")
            kks = ""
        village = village.strip()
        if village not in self.villages:
            if VILLAGE_CODE_RE.match(village):
                errors.add(line, "village_code", "village_code: unknown village")
            else:
                reason = "village_code: not a village code (PP.KK.CC.DDDD)"
                errors.add(line, "village_code", reason)
        programs, problem = self.programs[programs_raw]
        if problem:
            errors.add(line, "programs", problem)
        components, component_problem = self.components[components_raw]
        if component_problem:
            errors.add(line, "pkh_components", component_problem)
        elif components and not problem and "PKH" not in programs:
            errors.add(line, "pkh_components", "pkh_components: only allowed with PKH")
        digest = self.digest
        row = [
            line,
            digest("nik", nik) if nik else None,
            nik[-4:] if nik else None,
            name,
            birth_date,
            digest("phone", phone) if phone else None,
            digest("kks", kks) if kks else None,
            kks[-4:] if kks else None,
            village,
            "PKH" in programs,
            "BPNT" in programs,
            SAME,
            None,
        ]
        return row, components, errors.count == before

    def _birth_date(self, line: int, text: str, nik: str | None) -> date | None:
        """The birth date when it is ISO, plausible and agrees with the NIK."""
        value = self.dates[text]
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
        phone = phone_e164(text)
        if phone is None:
            self.errors.add(line, "phone", "phone: not a valid phone number")
        return phone


# Positions in a checked beneficiary row (PEOPLE_BATCH's column order).
_LINE, _NIK_HASH, _KKS_HASH, _ACTION, _ID = 0, 1, 6, 11, 12
_VALUES = slice(2, 11)  # the BENEFICIARY_FIELDS

Checked = tuple[list[Any], dict[str, int], bool]  # (row, components, valid)


async def _check_kks_owners(
    connection: AsyncConnection,
    valid: list[tuple[list[Any], dict[str, int]]],
    errors: BoundedErrors,
) -> list[tuple[list[Any], dict[str, int]]]:
    """A KKS card belongs to one family: refuse a number registered to another NIK."""
    wanted = {row[_KKS_HASH]: row for row, _ in valid if row[_KKS_HASH]}
    if not wanted:
        return valid
    table = Beneficiary.__table__
    statement = select(table.c.kks_hash, table.c.nik_hash).where(
        _among(connection, table.c.kks_hash, list(wanted))
    )
    refused: set[int] = set()
    for kks_hash, nik_hash in await connection.execute(statement):
        row = wanted[kks_hash]
        if nik_hash != row[_NIK_HASH]:
            errors.add(row[_LINE], "kks_number", KKS_TAKEN)
            refused.add(row[_LINE])
    return [entry for entry in valid if entry[0][_LINE] not in refused] if refused else valid


KKS_TAKEN = "kks_number: registered to another family"


async def _classify_beneficiaries(
    connection: AsyncConnection,
    valid: list[tuple[list[Any], dict[str, int]]],
    report: ImportReport,
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str]]]:
    """Mark each valid row INSERT, UPDATE or SAME against the stored family; count them.

    Returns the components to write (for the inserted and updated families) and the
    KKS numbers the updated families give up."""
    table = Beneficiary.__table__
    columns = [table.c.id, table.c.nik_hash, *(table.c[name] for name in BENEFICIARY_FIELDS)]
    hashes = [row[_NIK_HASH] for row, _ in valid]
    stored = {
        found[1]: (found[0], tuple(found[2:]))
        for found in await connection.execute(
            select(*columns).where(_among(connection, table.c.nik_hash, hashes))
        )
    }
    stored_components: dict[int, dict[str, int]] = {}
    if stored:
        ids = [entry[0] for entry in stored.values()]
        statement = select(
            PkhComponent.beneficiary_id, PkhComponent.component, PkhComponent.count
        ).where(_among(connection, PkhComponent.__table__.c.beneficiary_id, ids))
        for family, component, count in await connection.execute(statement):
            stored_components.setdefault(family, {})[component] = count
    kks_at = BENEFICIARY_FIELDS.index("kks_hash")
    to_write: list[tuple[str, str, int]] = []
    released: list[tuple[str, str]] = []
    for row, components in valid:
        entry = stored.get(row[_NIK_HASH])
        if entry is None:
            row[_ACTION] = INSERT
            report.inserted += 1
        elif entry[1] == tuple(row[_VALUES]) and stored_components.get(entry[0], {}) == components:
            report.unchanged += 1
            continue
        else:
            row[_ACTION], row[_ID] = UPDATE, entry[0]
            report.updated += 1
            if entry[1][kks_at] and entry[1][kks_at] != row[_KKS_HASH]:
                released.append((entry[1][kks_at], row[_NIK_HASH]))
        to_write.extend((row[_NIK_HASH], key, count) for key, count in components.items())
    return to_write, released


async def _write_beneficiary_batch(connection: AsyncConnection, now: Any) -> None:
    """Upsert the batch's new and changed families, then replace their PKH components."""
    stage, table = PEOPLE_BATCH, Beneficiary.__table__
    names = ["nik_hash", *BENEFICIARY_FIELDS]
    source = select(*(stage.c[name] for name in names), _now(now), _now(now)).order_by(
        stage.c.nik_hash  # in the unique index's order: cheaper index inserts
    )
    statement = dialect_insert_for(connection)(table).from_select(
        [*names, "created_at", "updated_at"], source
    )
    statement = statement.on_conflict_do_update(
        index_elements=["nik_hash"],
        set_={
            **{name: statement.excluded[name] for name in BENEFICIARY_FIELDS},
            "updated_at": statement.excluded.updated_at,
        },
    )
    await connection.execute(statement)
    components = PkhComponent.__table__
    await connection.execute(
        delete(components).where(
            components.c.beneficiary_id.in_(
                select(stage.c.beneficiary_id).where(stage.c.action == UPDATE)
            )
        )
    )
    staged = COMPONENT_BATCH
    await connection.execute(
        insert(components).from_select(
            ["beneficiary_id", "component", "count"],
            select(table.c.id, staged.c.component, staged.c["count"])
            .join(table, table.c.nik_hash == staged.c.nik_hash)
            .order_by(table.c.id, staged.c.component),
        )
    )


class _BeneficiaryBatches:
    """Stores checked batches: KKS owners, then (while the file is clean) the writes."""

    def __init__(
        self,
        connection: AsyncConnection,
        stager: Stager,
        errors: BoundedErrors,
        report: ImportReport,
        now: Any,
    ) -> None:
        self.connection = connection
        self.stager = stager
        self.errors = errors
        self.report = report
        self.now = now
        self.writing = True  # until a problem shows: then only keys are staged

    async def store(self, checked: list[Checked]) -> None:
        valid = [(row, components) for row, components, ok in checked if ok]
        if valid:
            valid = await _check_kks_owners(self.connection, valid, self.errors)
        keys = [(row[_LINE], row[_NIK_HASH], row[_KKS_HASH]) for row, _, _ in checked]
        if self.errors or _repeats(k[1] for k in keys if k[1]):
            self.writing = False  # the file will be refused: the rest is only checked
        if self.writing and _repeats(k[2] for k in keys if k[2]):
            self.writing = False
        if self.writing and valid:
            await self._write(valid)
        await self.stager.load(PEOPLE_KEYS, [key for key in keys if key[1] or key[2]])

    async def _write(self, valid: list[tuple[list[Any], dict[str, int]]]) -> None:
        components, released = await _classify_beneficiaries(self.connection, valid, self.report)
        changed = [tuple(row) for row, _ in valid if row[_ACTION] != SAME]
        if not changed:
            return
        await self.stager.load(PEOPLE_BATCH, changed)
        await self.stager.load(COMPONENT_BATCH, components)
        await self.stager.load(RELEASED_KKS, released)
        await _write_beneficiary_batch(self.connection, self.now)
        await self.stager.clear(PEOPLE_BATCH, COMPONENT_BATCH)


async def _beneficiary_file_checks(connection: AsyncConnection, errors: BoundedErrors) -> None:
    """Checks across the whole file: the same NIK or KKS number twice (the later line is
    refused), and a KKS number that another family of the file gives up."""
    keys = PEOPLE_KEYS
    firsts = select(
        keys.c.line,
        keys.c.nik_hash,
        keys.c.kks_hash,
        func.min(keys.c.line).over(partition_by=keys.c.nik_hash).label("nik_first"),
        func.min(keys.c.line).over(partition_by=keys.c.kks_hash).label("kks_first"),
    ).subquery()
    repeated_nik = and_(firsts.c.nik_hash.is_not(None), firsts.c.nik_first < firsts.c.line)
    repeated_kks = and_(firsts.c.kks_hash.is_not(None), firsts.c.kks_first < firsts.c.line)
    repeated = select(firsts.c.line, repeated_nik, firsts.c.nik_first, firsts.c.kks_first).where(
        or_(repeated_nik, and_(firsts.c.nik_hash.is_not(None), repeated_kks))
    )
    found = 0
    for line, nik_repeated, nik_first, kks_first in await connection.execute(
        repeated.order_by(firsts.c.line).limit(errors.limit)
    ):
        found += 1
        if nik_repeated:
            errors.add(line, "nik", f"nik: same NIK as line {nik_first}")
        else:
            errors.discard(line, "kks_number", KKS_TAKEN)
            errors.add(line, "kks_number", f"kks_number: same KKS number as line {kks_first}")
    await _count_repeats(connection, repeated, errors, found)
    released = RELEASED_KKS
    taken = (
        select(keys.c.line)
        .join(released, released.c.kks_hash == keys.c.kks_hash)
        .where(released.c.nik_hash != keys.c.nik_hash)
        .order_by(keys.c.line)
        .limit(errors.limit)
    )
    for (line,) in await connection.execute(taken):
        errors.discard(line, "kks_number", KKS_TAKEN)
        errors.add(line, "kks_number", KKS_TAKEN)


async def import_beneficiary_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
    rows: Iterable[Row],
    hasher: Hasher,
    errors: BoundedErrors,
    *,
    progress: Progress | None = None,
    today: date | None = None,
    total: int = 0,
) -> ImportReport:
    """Check, stage and import beneficiary rows (all or nothing, one transaction)."""
    today = today or date.today()

    async def work(
        session: AsyncSession, connection: AsyncConnection, report: ImportReport
    ) -> None:
        provinces = await _province_codes(connection)
        villages = set(await connection.scalars(select(Region.code).where(Region.level == 4)))
        checker = _BeneficiaryChecker(provinces, villages, hasher, today, errors)
        tables = [PEOPLE_KEYS, PEOPLE_BATCH, COMPONENT_BATCH, RELEASED_KKS]
        async with Stager(connection, tables) as stager:
            batches = _BeneficiaryBatches(connection, stager, errors, report, utcnow())
            with _phase("beneficiaries: read, check, stage and write"):
                await pipeline(rows, checker.check_batch, batches.store, progress, total)
            if errors.fatal:
                return
            with _phase("beneficiaries: checks across the file"):
                await _beneficiary_file_checks(connection, errors)

    return await _run_streamed(sessionmaker, work, errors)


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
    errors = BoundedErrors(BENEFICIARY_COLUMNS)
    for error in read_errors:
        errors.add(error.line, error.column, error.reason)
    rows = rows_from_records(records, BENEFICIARY_COLUMNS)
    return await import_beneficiary_rows(
        sessionmaker, rows, hasher, errors, progress=progress, today=today, total=len(records)
    )


async def import_beneficiaries(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    today: date | None = None,
) -> ImportReport:
    """Import a beneficiaries CSV file (see DESIGN.md); nothing is written if a row is bad.

    The file is streamed: memory does not grow with its length."""
    errors = BoundedErrors(BENEFICIARY_COLUMNS)
    rows = stream_csv(path, BENEFICIARY_COLUMNS, errors)
    return await import_beneficiary_rows(
        sessionmaker,
        rows,
        hasher,
        errors,
        progress=progress,
        today=today,
        total=count_data_lines(path) if progress else 0,
    )


# --- disbursements -----------------------------------------------------------------


@dataclass
class DisbursementRecord:
    """A disbursement whose wallet credit is re-synced (see services.bpnt.ledger)."""

    id: int
    beneficiary_id: int
    program: str
    period: str
    amount: int
    status: str


MONEY_LINE, MONEY_FAMILY, MONEY_PROGRAM, MONEY_PERIOD = 0, 1, 2, 3
MONEY_AMOUNT, MONEY_STATUS, MONEY_DATE, MONEY_ACTION = 4, 5, 6, 7
NIK_MEMO = 100_000  # NIK -> hash entries remembered (a family's rows are usually together)

MoneyChecked = tuple[int, str | None, list[Any] | None]  # (line, NIK hash, row if valid)


class _DisbursementChecker:
    """Checks disbursement rows one by one (the rules that need no other row)."""

    def __init__(self, provinces: frozenset[str], hasher: Hasher, errors: BoundedErrors) -> None:
        self.provinces = provinces
        self.digest = keyed_digest(hasher)
        self.errors = errors
        self.dates = _Memo(parse_iso_date)
        self.amounts = _Memo(parse_amount)
        self.hashes: dict[str, str] = {}  # NIK -> hash, recently seen

    def check_batch(self, batch: list[Row]) -> list[MoneyChecked]:
        """Check a batch (runs in a worker thread)."""
        if len(self.hashes) > NIK_MEMO:
            self.hashes.clear()
        return [(line, *self.check(line, fields)) for line, fields in batch]

    def check(self, line: int, fields: list[str]) -> tuple[str | None, list[Any] | None]:
        """(NIK hash when well formed, staged row when every field is valid)."""
        errors = self.errors
        before = errors.count
        nik, program, period, amount_text, status, when_text = fields
        nik = nik.strip()
        nik_hash = self.hashes.get(nik)
        if nik_hash is None:
            if problem := nik_problem(nik, self.provinces):
                errors.add(line, "nik", NIK_REASONS[problem])
            else:
                nik_hash = self.hashes[nik] = self.digest("nik", nik)
        program = program.strip().upper()
        period = period.strip()
        if program not in PROGRAMS:
            errors.add(line, "program", "program: must be PKH or BPNT")
        elif not PERIOD_RES[program].match(period):
            errors.add(line, "period", f"period: must be {PERIOD_FORMATS[program]} for {program}")
        amount, reason = self.amounts[amount_text.strip()]
        if reason:
            errors.add(line, "amount", reason)
        status = status.strip().lower()
        if status not in STATUSES:
            errors.add(line, "status", f"status: must be one of {', '.join(STATUSES)}")
        when_text = when_text.strip()
        when = self.dates[when_text] if when_text else None
        if when_text and when is None:
            errors.add(line, "date", "date: not a valid date (YYYY-MM-DD)")
        elif not when_text and status in DATED_STATUSES:
            errors.add(line, "date", f"date: required when status is {status} (YYYY-MM-DD)")
        if errors.count > before:
            return nik_hash, None
        return nik_hash, [line, 0, program, period, amount, status, when, SAME]


async def _registered(
    connection: AsyncConnection, hashes: Sequence[str]
) -> dict[str, tuple[int, bool, bool]]:
    """nik_hash -> (id, is_pkh, is_bpnt) for the registered ones among `hashes`."""
    if not hashes:
        return {}
    table = Beneficiary.__table__
    columns = (table.c.nik_hash, table.c.id, table.c.is_pkh, table.c.is_bpnt)
    statement = select(*columns).where(_among(connection, table.c.nik_hash, hashes))
    return {row[0]: (row[1], row[2], row[3]) for row in await connection.execute(statement)}


async def _classify_disbursements(
    connection: AsyncConnection, rows: list[list[Any]], report: ImportReport
) -> list[DisbursementRecord]:
    """Mark each row INSERT, UPDATE or SAME against the stored one; count them.

    Returns the changed disbursements whose wallet credit changes."""
    table = Disbursement.__table__
    families = list({row[MONEY_FAMILY] for row in rows})
    statement = select(
        table.c.beneficiary_id,
        table.c.program,
        table.c.period,
        table.c.id,
        table.c.amount,
        table.c.status,
        table.c.date,
    ).where(_among(connection, table.c.beneficiary_id, families))
    stored = {tuple(found[:3]): tuple(found[3:]) for found in await connection.execute(statement)}
    resync: list[DisbursementRecord] = []
    for row in rows:
        family, program, period = row[MONEY_FAMILY], row[MONEY_PROGRAM], row[MONEY_PERIOD]
        entry = stored.get((family, program, period))
        if entry is None:
            row[MONEY_ACTION] = INSERT
            report.inserted += 1
            continue
        amount, status = row[MONEY_AMOUNT], row[MONEY_STATUS]
        if entry[1:] == (amount, status, row[MONEY_DATE]):
            report.unchanged += 1
            continue
        row[MONEY_ACTION] = UPDATE
        report.updated += 1
        if credit_due(program, status, amount) != credit_due(program, entry[2], entry[1]):
            resync.append(DisbursementRecord(entry[0], family, program, period, amount, status))
    return resync


def _disbursement_upsert(connection: AsyncConnection, action: int, now: Any) -> Any:
    """INSERT ... SELECT the batch's rows marked `action` ... ON CONFLICT DO UPDATE."""
    stage = MONEY_BATCH
    names = ["beneficiary_id", "program", "period", *DISBURSEMENT_FIELDS]
    source = (
        select(*(stage.c[name] for name in names), _now(now))
        .where(stage.c.action == action)
        .order_by(stage.c.beneficiary_id, stage.c.program, stage.c.period)  # the index's order
    )
    statement = dialect_insert_for(connection)(Disbursement.__table__).from_select(
        [*names, "updated_at"], source
    )
    return statement.on_conflict_do_update(
        index_elements=["beneficiary_id", "program", "period"],
        set_={
            **{name: statement.excluded[name] for name in DISBURSEMENT_FIELDS},
            "updated_at": statement.excluded.updated_at,
        },
    )


async def _credit_new_disbursements(connection: AsyncConnection, now: Any) -> None:
    """Credit the new BPNT disbursements that are `disalurkan` (in NEW_CREDITS), in bulk.

    New disbursements have no ledger history, so each gets its first credit
    (`bpnt-credit:{id}`); wallets are created when missing and locked in family order,
    then each entry's balance_after is the running total from the locked balance."""
    credits, wallet = NEW_CREDITS, BpntWallet.__table__
    families = select(credits.c.beneficiary_id).distinct()
    await connection.execute(
        dialect_insert_for(connection)(wallet)
        .from_select(
            ["beneficiary_id", "balance", "updated_at"],
            select(credits.c.beneficiary_id, literal(0), _now(now))
            .where(credits.c.beneficiary_id.is_not(None))
            .distinct(),
        )
        .on_conflict_do_nothing(index_elements=["beneficiary_id"])
    )
    if connection.dialect.name == "postgresql":
        locked = (
            select(wallet.c.beneficiary_id)
            .where(wallet.c.beneficiary_id.in_(families))
            .order_by(wallet.c.beneficiary_id)
            .with_for_update()
            .subquery()
        )
        await connection.execute(select(func.count()).select_from(locked))
    running = func.sum(credits.c.amount).over(
        partition_by=credits.c.beneficiary_id, order_by=credits.c.id
    )
    entries = (
        select(
            credits.c.beneficiary_id,
            literal(CREDIT),
            credits.c.amount,
            wallet.c.balance + running,
            literal("bpnt-credit:") + cast(credits.c.id, String),
            credits.c.id,
            credits.c.period,
            _now(now),
        )
        .join(wallet, wallet.c.beneficiary_id == credits.c.beneficiary_id)
        .order_by(credits.c.beneficiary_id, credits.c.id)
    )
    await connection.execute(
        insert(LedgerEntry.__table__).from_select(
            [
                "beneficiary_id",
                "kind",
                "amount",
                "balance_after",
                "idempotency_key",
                "disbursement_id",
                "reference",
                "created_at",
            ],
            entries,
        )
    )
    totals = (
        select(credits.c.beneficiary_id, func.sum(credits.c.amount).label("delta"))
        .group_by(credits.c.beneficiary_id)
        .subquery()
    )
    await connection.execute(
        update(wallet)
        .values(balance=wallet.c.balance + totals.c.delta, updated_at=_now(now))
        .where(wallet.c.beneficiary_id == totals.c.beneficiary_id)
    )


class _DisbursementBatches:
    """Stores checked batches: registry and enrolment, then (while clean) the writes."""

    def __init__(
        self,
        session: AsyncSession,
        connection: AsyncConnection,
        stager: Stager,
        errors: BoundedErrors,
        report: ImportReport,
        now: Any,
    ) -> None:
        self.session = session
        self.connection = connection
        self.stager = stager
        self.errors = errors
        self.report = report
        self.now = now
        self.writing = True

    async def store(self, checked: list[MoneyChecked]) -> None:
        errors = self.errors
        hashes = {nik_hash for _, nik_hash, _ in checked if nik_hash}
        registry = await _registered(self.connection, list(hashes))
        valid: list[list[Any]] = []
        for line, nik_hash, row in checked:
            if nik_hash is None:
                continue
            found = registry.get(nik_hash)
            if found is None:
                errors.add(line, "nik", "nik: not in the beneficiary registry")
                continue
            if row is None:
                continue
            row[MONEY_FAMILY], is_pkh, is_bpnt = found
            program = row[MONEY_PROGRAM]
            if not (is_pkh if program == "PKH" else is_bpnt):
                errors.add(line, "program", f"program: beneficiary is not enrolled in {program}")
                continue
            valid.append(row)
        keys = [(row[0], row[1], row[2], row[3]) for row in valid]
        if errors or _repeats(key[1:] for key in keys):
            self.writing = False  # the file will be refused: the rest is only checked
        if self.writing and valid:
            await self._write(valid)
        await self.stager.load(MONEY_KEYS, keys)

    async def _write(self, valid: list[list[Any]]) -> None:
        connection, now = self.connection, self.now
        resync = await _classify_disbursements(connection, valid, self.report)
        changed = [tuple(row) for row in valid if row[MONEY_ACTION] != SAME]
        if not changed:
            return
        await self.stager.load(MONEY_BATCH, changed)
        await connection.execute(_disbursement_upsert(connection, UPDATE, now))
        await sync_disbursement_credits(self.session, resync)
        inserted = _disbursement_upsert(connection, INSERT, now)
        names = ["id", "beneficiary_id", "amount", "period"]
        table = Disbursement.__table__
        if connection.dialect.name == "postgresql":
            written = inserted.returning(
                table.c.id, table.c.beneficiary_id, table.c.amount, table.c.period,
                table.c.program, table.c.status,
            ).cte("written")  # fmt: skip
            source = select(*(written.c[name] for name in names)).where(
                written.c.program == BPNT, written.c.status == CREDITED_STATUS
            )
        else:
            await connection.execute(inserted)
            stage = MONEY_BATCH
            source = (
                select(*(table.c[name] for name in names))
                .join(
                    stage,
                    and_(
                        table.c.beneficiary_id == stage.c.beneficiary_id,
                        table.c.program == stage.c.program,
                        table.c.period == stage.c.period,
                    ),
                )
                .where(
                    stage.c.action == INSERT,
                    stage.c.program == BPNT,
                    stage.c.status == CREDITED_STATUS,
                )
            )
        await connection.execute(insert(NEW_CREDITS).from_select(names, source))
        await _credit_new_disbursements(connection, now)
        await self.stager.clear(MONEY_BATCH, NEW_CREDITS)


async def _disbursement_file_checks(connection: AsyncConnection, errors: BoundedErrors) -> None:
    """The same NIK, program and period twice in the file: the later lines are refused."""
    keys = MONEY_KEYS
    key = [keys.c.beneficiary_id, keys.c.program, keys.c.period]
    firsts = select(keys.c.line, func.min(keys.c.line).over(partition_by=key).label("first"))
    firsts = firsts.subquery()
    repeated = select(firsts.c.line, firsts.c.first).where(firsts.c.first < firsts.c.line)
    found = 0
    for line, first in await connection.execute(
        repeated.order_by(firsts.c.line).limit(errors.limit)
    ):
        found += 1
        errors.add(line, "period", f"period: same NIK, program and period as line {first}")
    await _count_repeats(connection, repeated, errors, found)


async def import_disbursement_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
    rows: Iterable[Row],
    hasher: Hasher,
    errors: BoundedErrors,
    *,
    progress: Progress | None = None,
    total: int = 0,
) -> ImportReport:
    """Check, stage and import disbursement rows (all or nothing, one transaction)."""

    async def work(
        session: AsyncSession, connection: AsyncConnection, report: ImportReport
    ) -> None:
        checker = _DisbursementChecker(await _province_codes(connection), hasher, errors)
        tables = [MONEY_KEYS, MONEY_BATCH, NEW_CREDITS]
        async with Stager(connection, tables) as stager:
            batches = _DisbursementBatches(session, connection, stager, errors, report, utcnow())
            with _phase("disbursements: read, check, stage and write"):
                await pipeline(rows, checker.check_batch, batches.store, progress, total)
            if errors.fatal:
                return
            with _phase("disbursements: checks across the file"):
                await _disbursement_file_checks(connection, errors)

    return await _run_streamed(sessionmaker, work, errors)


async def import_disbursement_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import disbursement rows (all or nothing, one transaction)."""
    errors = BoundedErrors(DISBURSEMENT_COLUMNS)
    for error in read_errors:
        errors.add(error.line, error.column, error.reason)
    rows = rows_from_records(records, DISBURSEMENT_COLUMNS)
    return await import_disbursement_rows(
        sessionmaker, rows, hasher, errors, progress=progress, total=len(records)
    )


async def import_disbursements(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    hasher: Hasher,
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a disbursements CSV file (see DESIGN.md); nothing is written if a row is bad.

    The file is streamed: memory does not grow with its length."""
    errors = BoundedErrors(DISBURSEMENT_COLUMNS)
    rows = stream_csv(path, DISBURSEMENT_COLUMNS, errors)
    total = count_data_lines(path) if progress else 0
    return await import_disbursement_rows(
        sessionmaker, rows, hasher, errors, progress=progress, total=total
    )


# --- e-Warongs and partners (small files, read whole) --------------------------------


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
