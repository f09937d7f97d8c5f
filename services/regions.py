"""Kemendagri regions: importing the wilayah CSV files, time zones, and lookups.

The files (provinces, regencies, districts, villages) come from `data/wilayah`
(ODbL; the licence ships beside them). Codes are dotted: `32`, `32.04`,
`32.04.10`, `32.04.10.2001`; a row's parent is the code without its last part.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import NUL, PROJECT_ROOT, dialect_insert
from models import Region

REGION_DATA_DIR = PROJECT_ROOT / "data" / "wilayah"

Progress = Callable[[int, int], None]

# Rows per INSERT statement: 4 columns each stays well below SQLite's and asyncpg's
# limits on bound parameters (32766 / 32767).
REGION_CHUNK = 5000
NAME_MAX = 120


@dataclass(frozen=True)
class RegionLevel:
    """One of the four files: its name, columns and the shape of its codes."""

    level: int
    file_name: str
    columns: tuple[str, ...]
    code_re: re.Pattern[str]


REGION_LEVELS: tuple[RegionLevel, ...] = (
    RegionLevel(1, "provinces.csv", ("code", "name"), re.compile(r"^\d{2}$")),
    RegionLevel(
        2, "regencies.csv", ("code", "province_code", "name"), re.compile(r"^\d{2}\.\d{2}$")
    ),
    RegionLevel(
        3, "districts.csv", ("code", "regency_code", "name"), re.compile(r"^\d{2}\.\d{2}\.\d{2}$")
    ),
    RegionLevel(
        4,
        "villages.csv",
        ("code", "district_code", "name"),
        re.compile(r"^\d{2}\.\d{2}\.\d{2}\.\d{4}$"),
    ),
)

VILLAGE_CODE_RE = REGION_LEVELS[-1].code_re

WIB, WITA, WIT = "Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura"
ZONE_ABBREVIATIONS: dict[str, str] = {WIB: "WIB", WITA: "WITA", WIT: "WIT"}

# Province code -> IANA zone. Unknown codes fall back to WIB (see timezone_for).
PROVINCE_ZONES: dict[str, str] = {
    **dict.fromkeys(("11", "12", "13", "14", "15", "16", "17", "18", "19", "21"), WIB),
    **dict.fromkeys(("31", "32", "33", "34", "35", "36"), WIB),
    **dict.fromkeys(("61", "62"), WIB),
    **dict.fromkeys(("51", "52", "53", "63", "64", "65"), WITA),
    **dict.fromkeys(("71", "72", "73", "74", "75", "76"), WITA),
    **dict.fromkeys(("81", "82", "91", "92", "93", "94", "95", "96"), WIT),
}


class RegionFileError(ValueError):
    """A region file that cannot be imported; names the file and the line."""

    def __init__(self, file_name: str, line: int, reason: str) -> None:
        super().__init__(f"{file_name}, line {line}: {reason}")
        self.file_name = file_name
        self.line = line
        self.reason = reason


def _zone_name(region_code: str | None) -> str:
    """The IANA zone name for a region code (any level, dotted or not)."""
    return PROVINCE_ZONES.get((region_code or "")[:2], WIB)


def in_scope(scope: str, region_code: str) -> bool:
    """Whether a region code (or prefix) lies inside an admin's scope: a national admin
    (scope "") sees everything, a regional one only codes under its prefix."""
    return region_code.startswith(scope)


def timezone_for(region_code: str | None) -> ZoneInfo:
    """The time zone of the province a region code belongs to (WIB when unknown)."""
    return ZoneInfo(_zone_name(region_code))


def zone_abbreviation(region_code: str | None) -> str:
    """`WIB`, `WITA` or `WIT` for a region code (WIB when unknown)."""
    return ZONE_ABBREVIATIONS[_zone_name(region_code)]


def parent_of(code: str) -> str | None:
    """The parent's code: `32.04.10.2001` -> `32.04.10`; None for a province."""
    head, dot, _ = code.rpartition(".")
    return head if dot else None


def _read_level(folder: Path, spec: RegionLevel, known_parents: set[str]) -> list[dict]:
    """Validated rows of one region file, as dicts ready for insertion."""
    path = folder / spec.file_name
    if not path.is_file():
        raise RegionFileError(spec.file_name, 0, "file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise RegionFileError(spec.file_name, line, "not UTF-8 text") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[dict] = []
    seen: set[str] = set()
    start = 1  # the line the row being read starts on
    try:
        header = next(reader, None)
        if header is None or tuple(cell.strip().lower() for cell in header) != spec.columns:
            raise RegionFileError(spec.file_name, 1, f"header must be {','.join(spec.columns)}")
        start = reader.line_num + 1
        for fields in reader:
            line = reader.line_num
            if any(cell.strip() for cell in fields):
                rows.append(_region_row(spec, fields, line, known_parents, seen))
            start = line + 1
    except csv.Error as error:  # e.g. a cell over the csv module's size limit
        reason = f"not valid CSV ({error}; is a closing quote missing?)"
        raise RegionFileError(spec.file_name, start, reason) from error
    return rows


def _region_row(
    spec: RegionLevel, fields: list[str], line: int, known_parents: set[str], seen: set[str]
) -> dict:
    """One validated region row; raises RegionFileError naming the file and line."""

    def fail(reason: str) -> RegionFileError:
        return RegionFileError(spec.file_name, line, reason)

    if len(fields) != len(spec.columns):
        raise fail(f"expected {len(spec.columns)} fields, found {len(fields)}")
    code, name = fields[0].strip(), fields[-1].strip()
    if not spec.code_re.match(code):
        raise fail("malformed code")
    if code in seen:
        raise fail(f"code {code} appears twice")
    seen.add(code)
    parent = parent_of(code)
    if spec.level > 1:
        if fields[1].strip() != parent:
            raise fail(f"parent code does not match code {code}")
        if parent not in known_parents:
            raise fail(f"parent {parent} is not in the previous file")
    if not name or len(name) > NAME_MAX:
        raise fail(f"name must be 1-{NAME_MAX} characters")
    if NUL in name:  # PostgreSQL's text cannot hold it
        raise fail("name contains control characters")
    return {"code": code, "name": name, "level": spec.level, "parent_code": parent}


def read_region_files(folder: Path) -> list[dict]:
    """All rows of the four region files, validated, parents before children."""
    rows: list[dict] = []
    known: set[str] = set()
    for spec in REGION_LEVELS:
        level_rows = _read_level(folder, spec, known)
        known = {row["code"] for row in level_rows}
        rows.extend(level_rows)
    return rows


def upsert_statement(
    session: AsyncSession,
    table: Table,
    key: Sequence[str],
    columns: Sequence[str],
    *,
    only_if_changed: bool = True,
    also_set: dict[str, Any] | None = None,
) -> Any:
    """`INSERT ... ON CONFLICT (key) DO UPDATE SET columns` for the session's dialect.

    With `only_if_changed`, rows whose columns already hold the new values are left
    untouched; `also_set` values (e.g. `updated_at`) are written but never compared.
    """
    statement = dialect_insert(session)(table)
    excluded = statement.excluded
    values: dict[str, Any] = {name: excluded[name] for name in columns}
    values.update(also_set or {})
    changed = or_(*(table.c[name].is_distinct_from(excluded[name]) for name in columns))
    return statement.on_conflict_do_update(
        index_elements=list(key), set_=values, where=changed if only_if_changed else None
    )


async def import_regions(
    sessionmaker: async_sessionmaker[AsyncSession],
    folder: Path,
    progress: Progress | None = None,
) -> int:
    """Load (or refresh) all regions from `folder` in one transaction; returns the row count."""
    rows = read_region_files(Path(folder))
    table = Region.__table__
    total = len(rows)
    async with sessionmaker() as session, session.begin():
        statement = upsert_statement(session, table, ["code"], ["name", "level", "parent_code"])
        for start in range(0, total, REGION_CHUNK):
            chunk = rows[start : start + REGION_CHUNK]
            await session.execute(statement, chunk)
            if progress:
                progress(start + len(chunk), total)
    return total


async def region_count(session: AsyncSession) -> int:
    """How many regions are loaded (0 means `import regions` has not run)."""
    return (await session.execute(select(func.count()).select_from(Region))).scalar_one()


async def region_name(session: AsyncSession, code: str) -> str | None:
    """The name of a region by its code, or None when unknown."""
    return await session.scalar(select(Region.name).where(Region.code == code))


async def region_names(session: AsyncSession, codes: Iterable[str]) -> dict[str, str]:
    """Names of the known regions among `codes`, in one query."""
    wanted = set(codes)
    if not wanted:
        return {}
    rows = await session.execute(select(Region.code, Region.name).where(Region.code.in_(wanted)))
    return {code: name for code, name in rows.all()}


@dataclass(frozen=True)
class RegionDirectory:
    """The province codes (cached once) and lookups of villages in the regions table."""

    province_codes: frozenset[str]

    @classmethod
    async def load(cls, session: AsyncSession) -> RegionDirectory:
        """Read the province codes from the database."""
        codes = await session.scalars(select(Region.code).where(Region.level == 1))
        return cls(province_codes=frozenset(codes))

    async def village_exists(self, session: AsyncSession, code: str) -> bool:
        """Whether `code` is a village (level 4) in the regions table."""
        found = await session.scalar(
            select(Region.code).where(Region.code == code, Region.level == 4)
        )
        return found is not None

    async def existing_villages(self, session: AsyncSession, codes: set[str]) -> set[str]:
        """The subset of `codes` that are villages in the regions table (one query per 1000)."""
        wanted = sorted(code for code in codes if VILLAGE_CODE_RE.match(code))
        found: set[str] = set()
        for start in range(0, len(wanted), 1000):
            chunk = wanted[start : start + 1000]
            result = await session.scalars(
                select(Region.code).where(Region.code.in_(chunk), Region.level == 4)
            )
            found.update(result)
        return found

    async def region_name(self, session: AsyncSession, code: str) -> str | None:
        """The name of a region by its code, or None when unknown."""
        return await region_name(session, code)
