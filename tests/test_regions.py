"""Regions: the import of the wilayah files, time zones by province, and lookups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from models import Region
from services.regions import (
    PROVINCE_ZONES,
    REGION_DATA_DIR,
    RegionDirectory,
    RegionFileError,
    import_regions,
    region_name,
    timezone_for,
    zone_abbreviation,
)

# A made-up province "99" so that tests never touch the real regions.
FAKE_FILES = {
    "provinces.csv": "code,name\n99,Provinsi Uji\n",
    "regencies.csv": "code,province_code,name\n99.01,99,Kabupaten Uji\n",
    "districts.csv": "code,regency_code,name\n99.01.01,99.01,Kecamatan Uji\n",
    "villages.csv": (
        "code,district_code,name\n"
        "99.01.01.2001,99.01.01,Desa Satu\n"
        '99.01.01.2002,99.01.01,"Desa ""Dua"", Lama"\n'
    ),
}


def write_folder(folder: Path, **overrides: str) -> Path:
    """The fake region files, with some files' contents replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {**FAKE_FILES, **overrides}.items():
        (folder / name).write_text(content, encoding="utf-8")
    return folder


async def fake_rows(session: AsyncSession) -> dict[str, tuple[str, int, str | None]]:
    """code -> (name, level, parent) of the fake province's regions."""
    rows = await session.execute(
        select(Region.code, Region.name, Region.level, Region.parent_code).where(
            Region.code.like("99%")
        )
    )
    return {code: (name, level, parent) for code, name, level, parent in rows}


@pytest.fixture
async def clean_fake(engine: AsyncEngine) -> AsyncIterator[None]:
    """Remove the fake province before and after a test."""
    statement = delete(Region).where(Region.code.like("99%"))
    async with engine.begin() as conn:
        await conn.execute(statement)
    yield
    async with engine.begin() as conn:
        await conn.execute(statement)


@pytest.mark.parametrize(
    ("code", "zone", "abbreviation"),
    [
        ("11", "Asia/Jakarta", "WIB"),
        ("21.71", "Asia/Jakarta", "WIB"),
        ("32.04.10.2001", "Asia/Jakarta", "WIB"),
        ("36", "Asia/Jakarta", "WIB"),
        ("61", "Asia/Jakarta", "WIB"),
        ("62.01", "Asia/Jakarta", "WIB"),
        ("51.71.01.1001", "Asia/Makassar", "WITA"),
        ("53", "Asia/Makassar", "WITA"),
        ("63", "Asia/Makassar", "WITA"),
        ("65", "Asia/Makassar", "WITA"),
        ("73.71.01.1006", "Asia/Makassar", "WITA"),
        ("76", "Asia/Makassar", "WITA"),
        ("81", "Asia/Jayapura", "WIT"),
        ("82", "Asia/Jayapura", "WIT"),
        ("91.71.01.1001", "Asia/Jayapura", "WIT"),
        ("96", "Asia/Jayapura", "WIT"),
        (None, "Asia/Jakarta", "WIB"),
        ("", "Asia/Jakarta", "WIB"),
        ("99", "Asia/Jakarta", "WIB"),
    ],
)
def test_zone_by_province(code: str | None, zone: str, abbreviation: str) -> None:
    assert timezone_for(code) == ZoneInfo(zone)
    assert zone_abbreviation(code) == abbreviation


async def test_every_real_province_has_a_zone(session: AsyncSession) -> None:
    directory = await RegionDirectory.load(session)
    assert len(directory.province_codes) == 38
    assert directory.province_codes <= set(PROVINCE_ZONES)


async def test_real_regions_are_loaded_with_parents(session: AsyncSession) -> None:
    counts = dict(
        (await session.execute(select(Region.level, func.count()).group_by(Region.level))).all()
    )
    assert counts == {1: 38, 2: 514, 3: 7285, 4: 83762}
    village = await session.get(Region, "32.04.10.2001")
    assert village is not None
    assert (village.name, village.level, village.parent_code) == ("Margaasih", 4, "32.04.10")
    assert (await session.get(Region, "32")).parent_code is None


async def test_directory_lookups(session: AsyncSession) -> None:
    directory = await RegionDirectory.load(session)
    assert "32" in directory.province_codes
    assert await directory.village_exists(session, "32.04.10.2001")
    assert not await directory.village_exists(session, "32.04.10")  # a district
    assert not await directory.village_exists(session, "32.04.10.9999")
    assert await directory.existing_villages(session, {"32.04.10.2001", "x", "32.04.10.9999"}) == {
        "32.04.10.2001"
    }
    assert await region_name(session, "32") == "Jawa Barat"
    assert await directory.region_name(session, "73.71.01.1006") == "Mariso"
    assert await region_name(session, "00") is None


@pytest.mark.usefixtures("clean_fake")
async def test_import_is_idempotent_and_updates_names(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "wilayah")
    calls: list[tuple[int, int]] = []
    assert await import_regions(sessionmaker, folder, lambda d, t: calls.append((d, t))) == 5
    assert calls[-1] == (5, 5)
    assert await import_regions(sessionmaker, folder) == 5
    rows = await fake_rows(session)
    assert rows == {
        "99": ("Provinsi Uji", 1, None),
        "99.01": ("Kabupaten Uji", 2, "99"),
        "99.01.01": ("Kecamatan Uji", 3, "99.01"),
        "99.01.01.2001": ("Desa Satu", 4, "99.01.01"),
        "99.01.01.2002": ('Desa "Dua", Lama', 4, "99.01.01"),
    }
    renamed = FAKE_FILES["villages.csv"].replace("Desa Satu", "Desa Kesatu")
    write_folder(folder, **{"villages.csv": renamed})
    await import_regions(sessionmaker, folder)
    session.expire_all()
    rows = await fake_rows(session)
    assert len(rows) == 5
    assert rows["99.01.01.2001"][0] == "Desa Kesatu"


@pytest.mark.usefixtures("clean_fake")
@pytest.mark.parametrize(
    ("file_name", "content", "line", "reason"),
    [
        ("provinces.csv", "kode,nama\n99,Provinsi Uji\n", 1, "header"),
        ("regencies.csv", "code,province_code,name\n99.01,98,Kabupaten Uji\n", 2, "parent"),
        ("regencies.csv", "code,province_code,name\n99.01,99,Kabupaten Uji\n99.02,97,X\n", 3, ""),
        ("districts.csv", "code,regency_code,name\n99.01.1,99.01,Kecamatan Uji\n", 2, "code"),
        (
            "villages.csv",
            "code,district_code,name\n99.01.01.2001,99.01.01,Desa Satu\n99.01.01.2002,99.01.01\n",
            3,
            "fields",
        ),
        (
            "villages.csv",
            "code,district_code,name\n99.01.01.2001,99.01.01,Desa\n99.01.01.2001,99.01.01,Lagi\n",
            3,
            "twice",
        ),
        ("villages.csv", "code,district_code,name\n99.01.01.2001,99.01.01,  \n", 2, "name"),
    ],
)
async def test_bad_file_names_file_and_line_and_imports_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    tmp_path: Path,
    file_name: str,
    content: str,
    line: int,
    reason: str,
) -> None:
    folder = write_folder(tmp_path / "wilayah", **{file_name: content})
    with pytest.raises(RegionFileError) as caught:
        await import_regions(sessionmaker, folder)
    assert caught.value.file_name == file_name
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert f"{file_name}, line {line}" in str(caught.value)
    assert await fake_rows(session) == {}


async def test_missing_file_is_reported(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    folder = write_folder(tmp_path / "wilayah")
    (folder / "districts.csv").unlink()
    with pytest.raises(RegionFileError, match=r"districts\.csv.*not found"):
        await import_regions(sessionmaker, folder)


def test_bundled_data_ships_its_licence() -> None:
    assert (REGION_DATA_DIR / "LICENSE-ODbL.md").is_file()
    assert (REGION_DATA_DIR / "villages.csv").is_file()
