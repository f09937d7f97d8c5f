"""Importing disbursements (one payment of a program for a period per row).

The file is streamed through `services.imports.staging`: each row is checked on its
own (`_DisbursementChecker`), then against the registry (the NIK is registered and
enrolled in the program), then the new and changed disbursements are upserted; the
same NIK, program and period twice in the file is found in SQL at the end. BPNT
wallets follow: a changed disbursement's credit is re-synced through
`services.bpnt.ledger`, and new `disalurkan` BPNT disbursements are credited in bulk
(`services.bpnt.ledger.bulk_credit`). Nothing is written when any row is wrong; importing
the same file again changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    SmallInteger,
    String,
    and_,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from infra.db import dialect_insert
from models import Beneficiary, Disbursement
from models.base import utcnow
from models.enums import Program
from services.bpnt import ledger
from services.bpnt.ledger import (
    BPNT,
    CREDITED_STATUS,
    credit_due,
    sync_disbursement_credits,
)
from services.identity import Hasher, nik_problem
from services.imports.csvfile import (
    BoundedErrors,
    ImportReport,
    Progress,
    Record,
    Row,
    RowError,
    checked_rows,
    count_data_lines,
    stream_csv,
)
from services.imports.rules import (
    DATED_STATUSES,
    NIK_REASONS,
    PERIOD_FORMATS,
    PERIOD_RES,
    PROGRAM_REASON,
    PROGRAM_VALUES,
    STATUS_REASON,
    STATUS_VALUES,
    Memo,
    keyed_digest,
    parse_amount,
    parse_iso_date,
    province_codes,
)
from services.imports.staging import (
    INSERT,
    SAME,
    UPDATE,
    Stager,
    among,
    count_repeats,
    phase,
    pipeline,
    repeats,
    run_streamed,
    stage_table,
    utc_literal,
)

DISBURSEMENT_COLUMNS = ("nik", "program", "period", "amount", "status", "date")
DISBURSEMENT_FIELDS = ("amount", "status", "date")

MONEY_KEYS = stage_table(
    "import_disbursement_keys",
    Column("line", Integer),
    Column("beneficiary_id", BigInteger),
    Column("program", String),
    Column("period", String),
)
MONEY_BATCH = stage_table(
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
NEW_CREDITS = stage_table(
    "import_new_credits",
    Column("id", BigInteger),
    Column("beneficiary_id", BigInteger),
    Column("amount", BigInteger),
    Column("period", String),
)


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
        self.dates = Memo(parse_iso_date)
        self.amounts = Memo(parse_amount)
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
        if program not in PROGRAM_VALUES:
            errors.add(line, "program", PROGRAM_REASON)
        elif not PERIOD_RES[program].match(period):
            errors.add(line, "period", f"period: must be {PERIOD_FORMATS[program]} for {program}")
        amount, reason = self.amounts[amount_text.strip()]
        if reason:
            errors.add(line, "amount", reason)
        status = status.strip().lower()
        if status not in STATUS_VALUES:
            errors.add(line, "status", STATUS_REASON)
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
    statement = select(*columns).where(among(connection, table.c.nik_hash, hashes))
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
    ).where(among(connection, table.c.beneficiary_id, families))
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
        select(*(stage.c[name] for name in names), utc_literal(now))
        .where(stage.c.action == action)
        .order_by(stage.c.beneficiary_id, stage.c.program, stage.c.period)  # the index's order
    )
    statement = dialect_insert(connection)(Disbursement.__table__).from_select(
        [*names, "updated_at"], source
    )
    return statement.on_conflict_do_update(
        index_elements=["beneficiary_id", "program", "period"],
        set_={
            **{name: statement.excluded[name] for name in DISBURSEMENT_FIELDS},
            "updated_at": statement.excluded.updated_at,
        },
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
            if not (is_pkh if program == Program.PKH else is_bpnt):
                errors.add(line, "program", f"program: beneficiary is not enrolled in {program}")
                continue
            valid.append(row)
        keys = [(row[0], row[1], row[2], row[3]) for row in valid]
        if errors or repeats(key[1:] for key in keys):
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
        await ledger.bulk_credit(connection, NEW_CREDITS, now)
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
    await count_repeats(connection, repeated, errors, found)


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
        checker = _DisbursementChecker(await province_codes(connection), hasher, errors)
        tables = [MONEY_KEYS, MONEY_BATCH, NEW_CREDITS]
        async with Stager(connection, tables) as stager:
            batches = _DisbursementBatches(session, connection, stager, errors, report, utcnow())
            with phase("disbursements: read, check, stage and write"):
                await pipeline(rows, checker.check_batch, batches.store, progress, total)
            if errors.fatal:
                return
            with phase("disbursements: checks across the file"):
                await _disbursement_file_checks(connection, errors)

    return await run_streamed(sessionmaker, work, errors)


async def import_disbursement_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    hasher: Hasher,
    *,
    progress: Progress | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import disbursement rows (all or nothing, one transaction)."""
    errors, rows = checked_rows(records, DISBURSEMENT_COLUMNS, read_errors)
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
