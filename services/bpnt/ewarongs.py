"""e-Warong shops: importing the list from CSV, finding the nearest, switching them on and off.

The import follows the small imports (`services.imports.wholefile`): every row is
checked first and reported by line; only a file without errors is written, in
one transaction, upserted by `code`, so importing it again changes nothing.
Names, addresses and banks are data: they are stored as given (whitespace runs
collapsed), never interpreted; markup such as `<b>` is escaped when rendered.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import EWarong
from models.base import utcnow
from services import audit
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
from services.regions import VILLAGE_CODE_RE, RegionDirectory, upsert_statement

EWARONG_COLUMNS = ("code", "name", "village_code", "address", "latitude", "longitude", "bank")
EWARONG_FIELDS = ("name", "village_code", "address", "latitude", "longitude", "bank", "active")
CODE_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
NAME_MAX = 200
ADDRESS_MAX = 300
BANK_MAX = 64

# Indonesia's bounding box (degrees), with a little margin around the outermost islands.
LATITUDE_RANGE = (-11.5, 6.5)
LONGITUDE_RANGE = (94.5, 141.5)

EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)
# Half-widths (degrees) of the boxes `nearest` tries before scanning everything.
SEARCH_BOXES = (0.1, 0.5, 2.0, 10.0)


# --- import ------------------------------------------------------------------------


@dataclass(frozen=True)
class EWarongRecord:
    """A validated e-Warong row."""

    line: int
    code: str
    values: dict[str, Any]  # the EWARONG_FIELDS, `active` always True


def _text(errors: ErrorList, line: int, column: str, raw: str, maximum: int) -> str | None:
    """Non-empty text of at most `maximum` characters, whitespace runs collapsed."""
    value = " ".join(raw.split())
    if not value or len(value) > maximum:
        errors.add(line, column, f"{column}: must be 1-{maximum} characters")
        return None
    if any(unicodedata.category(char) == "Cc" for char in value):
        errors.add(line, column, f"{column}: contains control characters")
        return None
    return value


def _coordinate(
    errors: ErrorList, line: int, column: str, raw: str, bounds: tuple[float, float]
) -> float | None:
    """A decimal degree value inside `bounds` (Indonesia's box)."""
    text = raw.strip()
    if not DECIMAL_RE.match(text):
        errors.add(line, column, f"{column}: not a decimal number (e.g. -6.9175)")
        return None
    value = float(text)
    low, high = bounds
    if not low <= value <= high:
        errors.add(line, column, f"{column}: outside Indonesia ({low:g} to {high:g})")
        return None
    return value


class _EWarongChecker:
    """Validates e-Warong rows one by one, collecting errors."""

    def __init__(self) -> None:
        self.errors = ErrorList()
        self.first_line: dict[str, int] = {}
        self.villages: dict[int, str] = {}  # line -> well-formed village code

    def check(self, line: int, row: dict[str, str]) -> EWarongRecord | None:
        """A record for a valid row, or None after recording its errors."""
        errors = self.errors
        before = len(errors)
        code = row["code"].strip()
        if not CODE_RE.match(code):
            errors.add(line, "code", "code: must be 1-32 of A-Z a-z 0-9 . _ -")
        elif code in self.first_line:
            errors.add(line, "code", f"code: same code as line {self.first_line[code]}")
        else:
            self.first_line[code] = line
        name = _text(errors, line, "name", row["name"], NAME_MAX)
        village = row["village_code"].strip()
        if VILLAGE_CODE_RE.match(village):
            self.villages[line] = village
        else:
            errors.add(line, "village_code", "village_code: not a village code (PP.KK.CC.DDDD)")
        address = _text(errors, line, "address", row["address"], ADDRESS_MAX)
        latitude = _coordinate(errors, line, "latitude", row["latitude"], LATITUDE_RANGE)
        longitude = _coordinate(errors, line, "longitude", row["longitude"], LONGITUDE_RANGE)
        bank = _text(errors, line, "bank", row["bank"], BANK_MAX)
        if len(errors) > before:
            return None
        values = {
            "name": name,
            "village_code": village,
            "address": address,
            "latitude": latitude,
            "longitude": longitude,
            "bank": bank,
            "active": True,
        }
        return EWarongRecord(line, code, values)


async def validate_ewarongs(
    session: AsyncSession, records: Sequence[Record]
) -> tuple[list[EWarongRecord], list[RowError]]:
    """Check every e-Warong row; valid records and all errors (sorted by line and column)."""
    checker = _EWarongChecker()
    valid = [record for line, row in records if (record := checker.check(line, row))]
    directory = await RegionDirectory.load(session)
    known = await directory.existing_villages(session, set(checker.villages.values()))
    unknown_lines: set[int] = set()
    for line, village in checker.villages.items():
        if village not in known:
            checker.errors.add(line, "village_code", "village_code: unknown village")
            unknown_lines.add(line)
    valid = [record for record in valid if record.line not in unknown_lines]
    return valid, by_position(checker.errors, EWARONG_COLUMNS)


async def _existing_ewarongs(
    session: AsyncSession, codes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """code -> stored EWARONG_FIELDS for the known ones among `codes`."""
    table = EWarong.__table__
    columns = [table.c.code, *(table.c[name] for name in EWARONG_FIELDS)]
    found: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(codes)):
        for row in await session.execute(select(*columns).where(table.c.code.in_(chunk))):
            found[row.code] = {name: getattr(row, name) for name in EWARONG_FIELDS}
    return found


async def _write_ewarong_batch(
    session: AsyncSession, batch: Sequence[EWarongRecord], report: ImportReport
) -> None:
    """Upsert one batch of e-Warongs, counting inserted, updated and unchanged rows."""
    existing = await _existing_ewarongs(session, [record.code for record in batch])
    changed: list[EWarongRecord] = []
    for record in batch:
        stored = existing.get(record.code)
        if stored is None:
            report.inserted += 1
        elif stored == record.values:
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
        EWarong.__table__,
        ["code"],
        EWARONG_FIELDS,
        only_if_changed=False,
        also_set={"updated_at": now},
    )
    rows = [{"code": r.code, **r.values, "updated_at": now} for r in changed]
    await session.execute(statement, rows)


async def import_ewarong_records(
    sessionmaker: async_sessionmaker[AsyncSession],
    records: Sequence[Record],
    *,
    progress: Progress | None = None,
    read_errors: Sequence[RowError] = (),
) -> ImportReport:
    """Validate and import e-Warong rows (all or nothing, one transaction)."""

    async def validate(session: AsyncSession) -> tuple[list[Any], list[RowError]]:
        return await validate_ewarongs(session, records)

    return await validate_then_write(
        sessionmaker, validate, _write_ewarong_batch, read_errors, progress
    )


async def import_ewarongs(
    sessionmaker: async_sessionmaker[AsyncSession],
    path: Path,
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Import an e-Warong CSV file (code,name,village_code,address,latitude,longitude,bank).

    Nothing is written when a row is bad. Rows are upserted by code and become
    active; e-Warongs missing from the file are left as they are.
    """
    records, read_errors = read_csv(path, EWARONG_COLUMNS)
    return await import_ewarong_records(
        sessionmaker, records, progress=progress, read_errors=read_errors
    )


# --- nearest -----------------------------------------------------------------------


@dataclass(frozen=True)
class NearbyEWarong:
    """An active e-Warong and its great-circle distance from the asked point."""

    code: str
    name: str
    address: str
    latitude: float
    longitude: float
    distance_km: float
    village_code: str


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two points given in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi = phi2 - phi1
    d_lambda = math.radians(lon2 - lon1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _box_safe_radius_km(latitude: float, half_width: float) -> float:
    """The distance within which every point lies inside the box of `half_width` degrees.

    A point outside the box differs by more than `half_width` in latitude (at least
    that arc away) or in longitude (at least the distance to that meridian, a great
    circle: asin(cos(lat) * sin(half_width))).
    """
    width = math.radians(half_width)
    to_meridian = math.asin(min(1.0, math.cos(math.radians(latitude)) * math.sin(width)))
    return EARTH_RADIUS_KM * min(width, to_meridian)


async def nearest(
    session: AsyncSession,
    latitude: float,
    longitude: float,
    limit: int = 3,
    max_km: float | None = None,
) -> list[NearbyEWarong]:
    """The `limit` active e-Warongs nearest to a point, closest first (ties by code),
    only those within `max_km` when it is given (a shop 3,000 km away is no help).

    A box around the point prefilters on the (latitude, longitude) index and widens
    until it holds `limit` e-Warongs that are provably the nearest (no closer one can
    lie outside the box); the last resort scans every active e-Warong.
    """
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        raise ValueError("latitude and longitude must be finite numbers")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise ValueError("latitude must be -90..90 and longitude -180..180")
    if limit <= 0:
        return []
    columns = (
        EWarong.code,
        EWarong.name,
        EWarong.address,
        EWarong.latitude,
        EWarong.longitude,
        EWarong.village_code,
    )
    base = select(*columns).where(EWarong.active.is_(True))
    for half_width in (*SEARCH_BOXES, None):
        statement = base
        if half_width is not None:
            statement = statement.where(
                EWarong.latitude.between(latitude - half_width, latitude + half_width),
                EWarong.longitude.between(longitude - half_width, longitude + half_width),
            )
        ranked = sorted(
            (
                NearbyEWarong(
                    code=row.code,
                    name=row.name,
                    address=row.address,
                    latitude=row.latitude,
                    longitude=row.longitude,
                    distance_km=haversine_km(latitude, longitude, row.latitude, row.longitude),
                    village_code=row.village_code,
                )
                for row in await session.execute(statement)
            ),
            key=lambda shop: (shop.distance_km, shop.code),
        )
        found = [shop for shop in ranked if max_km is None or shop.distance_km <= max_km][:limit]
        if half_width is None:
            return found
        safe = _box_safe_radius_km(latitude, half_width)
        if len(found) == limit and found[-1].distance_km <= safe:
            return found
        if max_km is not None and max_km <= safe:  # nothing nearer than max_km lies outside
            return found
    return []  # unreachable: the unbounded pass always returns


# --- lookups and switching ---------------------------------------------------------


async def get_ewarong(session: AsyncSession, code: str) -> EWarong | None:
    """The e-Warong with this code (active or not), or None (also for what is no code)."""
    if not CODE_RE.match(code):  # typed by an admin: a NUL would fail the query
        return None
    return await session.get(EWarong, code)


async def set_active(session: AsyncSession, code: str, active: bool, actor: int | None) -> bool:
    """Switch an e-Warong on or off (audited when it changes); False when the code is unknown."""
    ewarong = await get_ewarong(session, code)
    if ewarong is None:
        return False
    if ewarong.active != active:
        ewarong.active = active
        ewarong.updated_at = utcnow()
        await audit.record(
            session,
            "ewarong.activated" if active else "ewarong.deactivated",
            actor=actor,
            subject_type="ewarong",
            subject_id=code,
        )
        await session.flush()
    return True
