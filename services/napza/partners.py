"""Partner organisations for Napza help: importing them from CSV and looking them up.

CSV columns: `code,name,kind,region_codes,phone,services`.

- `code`: 1-32 of A-Z a-z 0-9 . _ - (like e-Warong codes), unique in the file.
- `name`: 1-200 characters. `kind`: one of `KINDS` (ipwl, rehabilitasi,
  puskesmas, rumah_sakit, lainnya; case-insensitive, stored lower-case).
- `region_codes`: `;`-separated region code prefixes the partner covers; each is
  a code in the regions table (province `32`, regency `32.04`, district, village)
  or `*` for the whole country (stored as the empty prefix ""). At least one.
- `phone`: empty, or a valid Indonesian number (stored in E.164).
- `services`: free text, at most 300 characters (may be empty).

Like the other imports, every row is checked first and reported by line; only a
file without errors is written, in one transaction. Organisations are upserted by
code and become active; their coverage rows are replaced to match the file.
Organisations missing from the file are left as they are.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import PartnerCoverage, PartnerOrganisation, Region
from models.base import utcnow
from services.identity import normalize_phone
from services.imports.csvfile import (
    ErrorList,
    ImportReport,
    Progress,
    Record,
    RowError,
    by_position,
    read_csv,
)
from services.imports.wholefile import chunks, validate_then_write
from services.regions import upsert_statement

PARTNER_COLUMNS = ("code", "name", "kind", "region_codes", "phone", "services")
PARTNER_FIELDS = ("name", "kind", "phone", "services", "active")
KINDS = ("ipwl", "rehabilitasi", "puskesmas", "rumah_sakit", "lainnya")
CODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
PREFIX_RE = re.compile(r"^\d{2}(\.\d{2}(\.\d{2}(\.\d{4})?)?)?$")
NATIONAL = "*"
NAME_MAX = 200
SERVICES_MAX = 300


@dataclass(frozen=True)
class PartnerRecord:
    """A validated partner row."""

    line: int
    code: str
    values: dict[str, Any]  # the PARTNER_FIELDS, `active` always True
    prefixes: frozenset[str]  # "" = national


def _has_control(value: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in value)


class _PartnerChecker:
    """Validates partner rows one by one, collecting errors."""

    def __init__(self) -> None:
        self.errors = ErrorList()
        self.first_line: dict[str, int] = {}
        self.prefixes: dict[int, set[str]] = {}  # line -> region codes to look up

    def check(self, line: int, row: dict[str, str]) -> PartnerRecord | None:
        errors = self.errors
        before = len(errors)
        code = row["code"].strip()
        if not CODE_RE.match(code):
            errors.add(line, "code", "code: must be 1-32 of A-Z a-z 0-9 . _ -")
        elif code in self.first_line:
            errors.add(line, "code", f"code: same code as line {self.first_line[code]}")
        else:
            self.first_line[code] = line
        name = " ".join(row["name"].split())
        if not name or len(name) > NAME_MAX:
            errors.add(line, "name", f"name: must be 1-{NAME_MAX} characters")
        elif _has_control(name):
            errors.add(line, "name", "name: contains control characters")
        kind = row["kind"].strip().lower()
        if kind not in KINDS:
            errors.add(line, "kind", f"kind: must be one of {', '.join(KINDS)}")
        prefixes = self._prefixes(line, row["region_codes"])
        phone = ""
        raw_phone = row["phone"].strip()
        if raw_phone:
            phone = normalize_phone(raw_phone) or ""
            if not phone:
                errors.add(line, "phone", "phone: not a valid phone number")
        services = " ".join(row["services"].split())
        if len(services) > SERVICES_MAX:
            errors.add(line, "services", f"services: at most {SERVICES_MAX} characters")
        elif _has_control(services):
            errors.add(line, "services", "services: contains control characters")
        if len(errors) > before or prefixes is None:
            return None
        values = {"name": name, "kind": kind, "phone": phone, "services": services, "active": True}
        return PartnerRecord(line, code, values, frozenset(prefixes))

    def _prefixes(self, line: int, text: str) -> set[str] | None:
        parts = [part.strip() for part in text.split(";") if part.strip()]
        if not parts:
            self.errors.add(line, "region_codes", "region_codes: at least one code (or *)")
            return None
        found: set[str] = set()
        for part in parts:
            if part == NATIONAL:
                found.add("")
            elif PREFIX_RE.match(part):
                found.add(part)
            else:
                self.errors.add(
                    line, "region_codes", "region_codes: not a region code (e.g. 32 or 32.04) or *"
                )
                return None
        self.prefixes[line] = {prefix for prefix in found if prefix}
        return found


async def _existing_regions(session: AsyncSession, codes: set[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(sorted(codes)):
        found.update(await session.scalars(select(Region.code).where(Region.code.in_(chunk))))
    return found


async def validate_partners(
    session: AsyncSession, records: Sequence[Record]
) -> tuple[list[PartnerRecord], list[RowError]]:
    """Check every partner row; valid records and all errors (sorted by line and column)."""
    checker = _PartnerChecker()
    valid = [record for line, row in records if (record := checker.check(line, row))]
    wanted = {code for codes in checker.prefixes.values() for code in codes}
    known = await _existing_regions(session, wanted)
    bad_lines: set[int] = set()
    for line, codes in checker.prefixes.items():
        if codes - known:
            checker.errors.add(line, "region_codes", "region_codes: unknown region code")
            bad_lines.add(line)
    valid = [record for record in valid if record.line not in bad_lines]
    return valid, by_position(checker.errors, PARTNER_COLUMNS)


async def _stored(
    session: AsyncSession, codes: Sequence[str]
) -> dict[str, tuple[dict[str, Any], frozenset[str]]]:
    """code -> (stored PARTNER_FIELDS, coverage prefixes) for the known ones among `codes`."""
    table = PartnerOrganisation.__table__
    columns = [table.c.code, *(table.c[name] for name in PARTNER_FIELDS)]
    found: dict[str, tuple[dict[str, Any], set[str]]] = {}
    rows = await session.execute(select(*columns).where(table.c.code.in_(list(codes))))
    for row in rows:
        found[row.code] = ({name: getattr(row, name) for name in PARTNER_FIELDS}, set())
    if found:
        coverage = await session.execute(
            select(PartnerCoverage.partner_code, PartnerCoverage.prefix).where(
                PartnerCoverage.partner_code.in_(list(found))
            )
        )
        for code, prefix in coverage:
            found[code][1].add(prefix)
    return {code: (values, frozenset(prefixes)) for code, (values, prefixes) in found.items()}


async def _write_partner_batch(
    session: AsyncSession, batch: Sequence[PartnerRecord], report: ImportReport
) -> None:
    """Upsert one batch of partners and replace their coverage."""
    existing = await _stored(session, [record.code for record in batch])
    changed: list[PartnerRecord] = []
    for record in batch:
        stored = existing.get(record.code)
        if stored is None:
            report.inserted += 1
        elif stored == (record.values, record.prefixes):
            report.unchanged += 1
            continue
        else:
            report.updated += 1
        changed.append(record)
    if not changed:
        return
    now = utcnow()
    statement = upsert_statement(
        session,
        PartnerOrganisation.__table__,
        ["code"],
        PARTNER_FIELDS,
        only_if_changed=False,
        also_set={"updated_at": now},
    )
    await session.execute(
        statement, [{"code": r.code, **r.values, "updated_at": now} for r in changed]
    )
    codes = [record.code for record in changed]
    await session.execute(delete(PartnerCoverage).where(PartnerCoverage.partner_code.in_(codes)))
    coverage = [
        {"partner_code": record.code, "prefix": prefix}
        for record in changed
        for prefix in sorted(record.prefixes)
    ]
    await session.execute(insert(PartnerCoverage.__table__), coverage)


async def import_partner_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    *,
    progress: Progress | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import partner rows (all or nothing, one transaction)."""

    async def validate(session: AsyncSession) -> tuple[list[Any], list[RowError]]:
        return await validate_partners(session, records)

    return await validate_then_write(
        sessionmaker, validate, _write_partner_batch, read_errors, progress
    )


async def import_partners(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Import a partners CSV file (code,name,kind,region_codes,phone,services)."""
    records, read_errors = read_csv(path, PARTNER_COLUMNS)
    return await import_partner_records(
        sessionmaker, records, progress=progress, read_errors=read_errors
    )


# --- lookups -----------------------------------------------------------------------


async def get_partner(session: AsyncSession, code: str) -> PartnerOrganisation | None:
    """The partner organisation with this code (active or not), or None."""
    return await session.get(PartnerOrganisation, code)


async def coverage_of(session: AsyncSession, code: str) -> list[str]:
    """The coverage prefixes of a partner, sorted ("" = national)."""
    result = await session.scalars(
        select(PartnerCoverage.prefix)
        .where(PartnerCoverage.partner_code == code)
        .order_by(PartnerCoverage.prefix)
    )
    return list(result)


def covering_prefixes(region_code: str) -> list[str]:
    """Every prefix that covers `region_code`: "", "32", "32.04", ... up to the code itself."""
    parts = region_code.split(".")
    return ["", *(".".join(parts[: index + 1]) for index in range(len(parts)))]
