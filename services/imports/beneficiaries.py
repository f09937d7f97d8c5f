"""Importing the beneficiary registry (one family per row, keyed by NIK).

The file is streamed through `services.imports.staging`: each row is checked on its
own (`_BeneficiaryChecker`), then against the registry (a KKS number registered to
another family), then the new and changed families are upserted with their PKH
components; the same NIK or KKS number twice in the file is found in SQL at the end.
Nothing is written when any row is wrong; importing the same file again changes
nothing. NIK and KKS are stored only as keyed hashes plus their last four digits,
phones only as keyed hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    SmallInteger,
    String,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from infra.db import dialect_insert
from models import Beneficiary, PkhComponent, Region
from models.base import utcnow
from models.enums import Program
from services.identity import KKS_RE, Hasher, nik_problem
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
    NAME_MAX,
    NIK_REASONS,
    Memo,
    birth_date_matches_nik,
    keyed_digest,
    parse_components,
    parse_iso_date,
    parse_programs,
    phone_e164,
    province_codes,
)
from services.imports.staging import (
    INSERT,
    SAME,
    UPDATE,
    HashText,
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
from services.regions import VILLAGE_CODE_RE

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


# Every row of a beneficiaries file with a well-formed NIK or KKS number: the checks
# across the whole file run over it at the end.
PEOPLE_KEYS = stage_table(
    "import_beneficiary_keys",
    Column("line", Integer),
    Column("nik_hash", HashText),
    Column("kks_hash", HashText),
)
# The rows of one batch that insert or change a family (emptied after each batch).
PEOPLE_BATCH = stage_table(
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
COMPONENT_BATCH = stage_table(
    "import_pkh_components",
    Column("nik_hash", HashText),
    Column("component", String),
    Column("count", Integer),
)
# KKS numbers an earlier batch took away from a family: no other family may take them.
RELEASED_KKS = stage_table(
    "import_released_kks",
    Column("kks_hash", HashText),
    Column("nik_hash", HashText),
)


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
        self.dates = Memo(parse_iso_date)
        self.programs = Memo(parse_programs)
        self.components = Memo(parse_components)

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
        if problem := nik_problem(nik, self.provinces):
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
        elif components and not problem and Program.PKH not in programs:
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
            Program.PKH in programs,
            Program.BPNT in programs,
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
        among(connection, table.c.kks_hash, list(wanted))
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
            select(*columns).where(among(connection, table.c.nik_hash, hashes))
        )
    }
    stored_components: dict[int, dict[str, int]] = {}
    if stored:
        ids = [entry[0] for entry in stored.values()]
        statement = select(
            PkhComponent.beneficiary_id, PkhComponent.component, PkhComponent.count
        ).where(among(connection, PkhComponent.__table__.c.beneficiary_id, ids))
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
    source = select(
        *(stage.c[name] for name in names), utc_literal(now), utc_literal(now)
    ).order_by(
        stage.c.nik_hash  # in the unique index's order: cheaper index inserts
    )
    statement = dialect_insert(connection)(table).from_select(
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
        if self.errors or repeats(k[1] for k in keys if k[1]):
            self.writing = False  # the file will be refused: the rest is only checked
        if self.writing and repeats(k[2] for k in keys if k[2]):
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
    await count_repeats(connection, repeated, errors, found)
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
        provinces = await province_codes(connection)
        villages = set(await connection.scalars(select(Region.code).where(Region.level == 4)))
        checker = _BeneficiaryChecker(provinces, villages, hasher, today, errors)
        tables = [PEOPLE_KEYS, PEOPLE_BATCH, COMPONENT_BATCH, RELEASED_KKS]
        async with Stager(connection, tables) as stager:
            batches = _BeneficiaryBatches(connection, stager, errors, report, utcnow())
            with phase("beneficiaries: read, check, stage and write"):
                await pipeline(rows, checker.check_batch, batches.store, progress, total)
            if errors.fatal:
                return
            with phase("beneficiaries: checks across the file"):
                await _beneficiary_file_checks(connection, errors)

    return await run_streamed(sessionmaker, work, errors)


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
    errors, rows = checked_rows(records, BENEFICIARY_COLUMNS, read_errors)
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
