"""e-Warong import (validation by line, all-or-nothing, idempotency) and the nearest search."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import AuditEvent, EWarong
from services.bpnt import ewarongs
from services.bpnt.ewarongs import (
    EWARONG_COLUMNS,
    NearbyEWarong,
    get_ewarong,
    haversine_km,
    import_ewarongs,
    nearest,
    set_active,
)
from services.imports.csvfile import ImportReport

HEADER = ",".join(EWARONG_COLUMNS)
BANDUNG, MAKASSAR, JAYAPURA = "32.73.01.1001", "73.71.01.1001", "91.71.01.1001"
ROWS = {
    "BDG-01": f"BDG-01,Warung Bu Siti,{BANDUNG},Jl. Diponegoro 22,-6.9025,107.6187,BRI",
    "BDG-02": f"BDG-02,e-Warong Alun-alun,{BANDUNG},Jl. Asia Afrika 1,-6.9218,107.6070,BNI",
    "BDG-03": f"BDG-03,Warung Lembang,{BANDUNG},Jl. Raya Lembang 5,-6.8117,107.6178,Mandiri",
    "MKS-01": f"MKS-01,Warung Losari,{MAKASSAR},Jl. Penghibur 1,-5.1436,119.4075,BRI",
    "MKS-02": f"MKS-02,Warung Bandara,{MAKASSAR},Jl. Poros Maros,-5.0617,119.5540,BTN",
    "JAP-01": f"JAP-01,Warung Jayapura,{JAYAPURA},Jl. Ahmad Yani 3,-2.5337,140.7181,BNI",
}


def csv_file(folder: Path, *rows: str, header: str = HEADER, bom: bool = False) -> Path:
    path = folder / "ewarongs.csv"
    text = "\n".join([header, *rows]) + "\n"
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def counts(report: ImportReport) -> tuple[int, int, int]:
    assert report.ok, report.errors
    return report.inserted, report.updated, report.unchanged


def errors_of(report: ImportReport) -> list[tuple[int, str | None, str]]:
    return [(error.line, error.column, error.reason) for error in report.errors]


async def load_all(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, *ROWS.values()))) == (
        6,
        0,
        0,
    )


async def ewarong_count(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(EWarong))).scalar_one()


# --- import ------------------------------------------------------------------------


async def test_import_is_idempotent_and_updates_by_code(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    path = csv_file(tmp_path, *ROWS.values(), bom=True)
    progress: list[tuple[int, int]] = []
    report = await import_ewarongs(
        sessionmaker, path, progress=lambda d, t: progress.append((d, t))
    )
    assert counts(report) == (6, 0, 0)
    assert progress[-1] == (6, 6)
    assert counts(await import_ewarongs(sessionmaker, path)) == (0, 0, 6)
    moved = ROWS["BDG-01"].replace("Jl. Diponegoro 22", "Jl. Diponegoro 24")
    rows = [moved if key == "BDG-01" else row for key, row in ROWS.items()]
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, *rows))) == (0, 1, 5)
    assert await ewarong_count(session) == 6
    shop = await get_ewarong(session, "BDG-01")
    assert shop is not None
    assert (shop.address, shop.latitude, shop.longitude, shop.bank, shop.active) == (
        "Jl. Diponegoro 24",
        -6.9025,
        107.6187,
        "BRI",
        True,
    )
    assert await get_ewarong(session, "NOPE") is None


async def test_reimport_reactivates_an_inactive_ewarong(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await load_all(sessionmaker, tmp_path)
    async with sessionmaker() as session, session.begin():
        assert await set_active(session, "MKS-02", False, actor=77)
    report = await import_ewarongs(sessionmaker, csv_file(tmp_path, ROWS["MKS-02"]))
    assert counts(report) == (0, 1, 0)
    async with sessionmaker() as session:
        shop = await get_ewarong(session, "MKS-02")
        assert shop is not None and shop.active


async def test_every_rule_is_reported_with_its_line(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    rows = [
        ROWS["BDG-01"],  # 2: fine
        ROWS["BDG-01"].replace("Warung Bu Siti", "Copy"),  # 3: duplicate code
        ROWS["BDG-02"].replace("BDG-02", "BDG 02"),  # 4: space in code
        ROWS["BDG-03"].replace("BDG-03", "X" * 33),  # 5: code too long
        ROWS["MKS-01"].replace("Warung Losari", "  "),  # 6: empty name
        ROWS["MKS-02"].replace("Warung Bandara", "N" * 201),  # 7: name too long
        ROWS["JAP-01"].replace(JAYAPURA, "91.71.01"),  # 8: not a village code
        ROWS["JAP-01"].replace("JAP-01", "JAP-02").replace(JAYAPURA, "91.71.01.9999"),  # 9
        ROWS["BDG-02"].replace("BDG-02", "B-10").replace("Jl. Asia Afrika 1", ""),  # 10
        ROWS["BDG-02"].replace("BDG-02", "B-11").replace("Jl. Asia Afrika 1", "A" * 301),  # 11
        ROWS["BDG-02"].replace("BDG-02", "B-12").replace("-6.9218", "enam"),  # 12
        ROWS["BDG-02"].replace("BDG-02", "B-13").replace("-6.9218", "7.0"),  # 13: too north
        ROWS["BDG-02"].replace("BDG-02", "B-14").replace("107.6070", "151.2"),  # 14: Sydney-ish
        ROWS["BDG-02"].replace("BDG-02", "B-15").replace("107.6070", "nan"),  # 15
        ROWS["BDG-02"].replace("BDG-02", "B-16").replace(",BNI", ","),  # 16: empty bank
        ROWS["BDG-02"].replace("BDG-02", "B-17").replace(",BNI", "," + "B" * 65),  # 17
        ROWS["BDG-02"].replace("BDG-02", "B-18") + ",extra",  # 18: too many fields
        ROWS["BDG-02"].replace("BDG-02", "B-19").replace("Jl. Asia Afrika 1", "Jl.\x00 1"),  # 19
    ]
    report = await import_ewarongs(sessionmaker, csv_file(tmp_path, *rows))
    assert errors_of(report) == [
        (3, "code", "code: same code as line 2"),
        (4, "code", "code: must be 1-32 of A-Z a-z 0-9 . _ -"),
        (5, "code", "code: must be 1-32 of A-Z a-z 0-9 . _ -"),
        (6, "name", "name: must be 1-200 characters"),
        (7, "name", "name: must be 1-200 characters"),
        (8, "village_code", "village_code: not a village code (PP.KK.CC.DDDD)"),
        (9, "village_code", "village_code: unknown village"),
        (10, "address", "address: must be 1-300 characters"),
        (11, "address", "address: must be 1-300 characters"),
        (12, "latitude", "latitude: not a decimal number (e.g. -6.9175)"),
        (13, "latitude", "latitude: outside Indonesia (-11.5 to 6.5)"),
        (14, "longitude", "longitude: outside Indonesia (94.5 to 141.5)"),
        (15, "longitude", "longitude: not a decimal number (e.g. -6.9175)"),
        (16, "bank", "bank: must be 1-64 characters"),
        (17, "bank", "bank: must be 1-64 characters"),
        (18, None, "expected 7 fields, found 8"),
        (19, "address", "address: contains control characters"),
    ]
    assert report.inserted == report.updated == report.unchanged == 0
    assert await ewarong_count(session) == 0  # the good row on line 2 was not written either


async def test_several_problems_on_one_line_are_all_listed(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    row = "bad code,,32.73.01.1001,,91,200,"
    report = await import_ewarongs(sessionmaker, csv_file(tmp_path, row))
    assert [(e.line, e.column) for e in report.errors] == [
        (2, "code"),
        (2, "name"),
        (2, "address"),
        (2, "latitude"),
        (2, "longitude"),
        (2, "bank"),
    ]


async def test_header_and_encoding_are_checked(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = csv_file(tmp_path, ROWS["BDG-01"], header="kode,nama,desa,alamat,lat,lon,bank")
    assert errors_of(await import_ewarongs(sessionmaker, path)) == [
        (1, None, f"header must be: {HEADER}")
    ]
    path.write_bytes(HEADER.encode() + b"\n" + ROWS["BDG-01"].encode().replace(b"Siti", b"\xff"))
    assert errors_of(await import_ewarongs(sessionmaker, path)) == [(2, None, "not UTF-8 text")]


async def test_limits_are_inclusive_and_values_are_trimmed(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    row = (
        f" {'C' * 32} ,{'N' * 200},{BANDUNG},  {'A' * 300}  ,+6.5,141.5,{'B' * 64}\n"
        f"edge.south_west-1,Ujung   Selatan,{BANDUNG},Pulau Rote,-11.5,94.5,BRI"
    )
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, row))) == (2, 0, 0)
    shop = await get_ewarong(session, "C" * 32)
    assert shop is not None
    assert (len(shop.name), len(shop.address), len(shop.bank)) == (200, 300, 64)
    assert (shop.latitude, shop.longitude) == (6.5, 141.5)
    corner = await get_ewarong(session, "edge.south_west-1")
    assert corner is not None and corner.name == "Ujung Selatan"


async def test_hostile_strings_are_stored_literally(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    name = '<b>Warung</b> & "Bu" Ani <script>alert(1)</script>'
    address = "=cmd()|' ; DROP TABLE ewarongs; --"
    bank = '=HYPERLINK("http://x")'
    quoted = [f'"{value.replace(chr(34), chr(34) * 2)}"' for value in (name, address, bank)]
    row = f"HX-1,{quoted[0]},{BANDUNG},{quoted[1]},-6.9,107.6,{quoted[2]}"
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, row))) == (1, 0, 0)
    shop = await get_ewarong(session, "HX-1")
    assert shop is not None
    assert (shop.name, shop.address, shop.bank) == (name, address, bank)
    assert await ewarong_count(session) == 1


# --- nearest -----------------------------------------------------------------------


def law_of_cosines_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """An independent great-circle formula to check the haversine against."""
    (lat1, lon1), (lat2, lon2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    cosine = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(
        lon2 - lon1
    )
    return 6371.0088 * math.acos(max(-1.0, min(1.0, cosine)))


def test_haversine_matches_known_distances() -> None:
    assert haversine_km(0, 0, 0, 1) == pytest.approx(111.19, abs=0.01)
    bandung, makassar = (-6.9175, 107.6191), (-5.1477, 119.4327)
    # Bandung to Makassar is about 1,320 km as the crow flies.
    assert haversine_km(*bandung, *makassar) == pytest.approx(1318, rel=0.01)
    assert haversine_km(*bandung, *makassar) == pytest.approx(
        law_of_cosines_km(bandung, makassar), rel=1e-9
    )
    assert haversine_km(*bandung, *bandung) == 0


async def test_nearest_three_around_bandung(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await load_all(sessionmaker, tmp_path)
    found = await nearest(session, -6.9030, 107.6190)  # beside Gedung Sate
    assert [shop.code for shop in found] == ["BDG-01", "BDG-02", "BDG-03"]
    assert [shop.distance_km for shop in found] == pytest.approx([0.065, 2.50, 10.15], abs=0.05)
    assert found[0] == NearbyEWarong(
        code="BDG-01",
        name="Warung Bu Siti",
        address="Jl. Diponegoro 22",
        latitude=-6.9025,
        longitude=107.6187,
        distance_km=found[0].distance_km,
        village_code=BANDUNG,
    )
    for shop in found:
        expected = law_of_cosines_km((-6.9030, 107.6190), (shop.latitude, shop.longitude))
        assert shop.distance_km == pytest.approx(expected, rel=1e-6, abs=1e-3)


async def test_nearest_widens_across_the_archipelago(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    await load_all(sessionmaker, tmp_path)
    found = await nearest(session, -5.1477, 119.4327)  # Makassar city centre
    assert [shop.code for shop in found] == ["MKS-01", "MKS-02", "BDG-03"]  # Lembang
    assert found[0].distance_km == pytest.approx(2.8, abs=0.2)
    assert found[1].distance_km == pytest.approx(16.5, abs=0.2)
    assert found[2].distance_km == pytest.approx(1320, rel=0.01)
    found = await nearest(session, -2.5916, 140.6690, limit=2)  # Sentani, near Jayapura
    assert [shop.code for shop in found] == ["JAP-01", "MKS-02"]
    nearby = await nearest(session, -2.5916, 140.6690, limit=2, max_km=25)
    assert [shop.code for shop in nearby] == ["JAP-01"]  # Makassar is 2,360 km away
    assert await nearest(session, -6.9932, 110.4203, max_km=25) == []  # Semarang: none
    assert found[0].distance_km == pytest.approx(8.4, abs=0.2)
    assert found[1].distance_km == pytest.approx(2360, rel=0.01)
    everything = await nearest(session, -6.9, 107.6, limit=10)
    assert [shop.code for shop in everything] == [
        "BDG-01",
        "BDG-02",
        "BDG-03",
        "MKS-01",
        "MKS-02",
        "JAP-01",
    ]
    distances = [shop.distance_km for shop in everything]
    assert distances == sorted(distances)


async def test_nearest_is_exact_beyond_the_box_corners(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    """A shop in the corner of the first box is farther than one just outside its edge."""
    rows = [
        f"CORNER,Pojok,{BANDUNG},Jl. Pojok,-6.801,107.699,BRI",  # inside the 0.1° box, ~15.5 km
        f"EDGE,Tepi,{BANDUNG},Jl. Tepi,-6.9,107.711,BRI",  # just outside it, ~12.2 km
    ]
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, *rows))) == (2, 0, 0)
    found = await nearest(session, -6.9, 107.6, limit=1)
    assert [shop.code for shop in found] == ["EDGE"]
    assert found[0].distance_km == pytest.approx(12.25, abs=0.05)
    assert [shop.code for shop in await nearest(session, -6.9, 107.6, limit=2)] == [
        "EDGE",
        "CORNER",
    ]


async def test_inactive_ewarongs_are_not_offered(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    await load_all(sessionmaker, tmp_path)
    async with sessionmaker() as session, session.begin():
        assert await set_active(session, "BDG-01", False, actor=42)
        assert await set_active(session, "BDG-01", False, actor=42)  # no change, no event
        assert not await set_active(session, "NOPE", False, actor=42)
    async with sessionmaker() as session:
        found = await nearest(session, -6.9030, 107.6190)
        assert [shop.code for shop in found] == ["BDG-02", "BDG-03", "MKS-01"]
        events = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.actor_telegram_id, AuditEvent.subject_id)
            )
        ).all()
        assert [tuple(event) for event in events] == [("ewarong.deactivated", 42, "BDG-01")]
    async with sessionmaker() as session, session.begin():
        assert await set_active(session, "BDG-01", True, actor=42)
    async with sessionmaker() as session:
        assert (await nearest(session, -6.9030, 107.6190, limit=1))[0].code == "BDG-01"
        actions = await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))
        assert list(actions) == ["ewarong.deactivated", "ewarong.activated"]


async def test_nearest_with_few_or_no_shops(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, tmp_path: Path
) -> None:
    assert await nearest(session, -6.9, 107.6) == []
    assert counts(await import_ewarongs(sessionmaker, csv_file(tmp_path, ROWS["JAP-01"]))) == (
        1,
        0,
        0,
    )
    found = await nearest(session, 51.5, -0.12)  # someone sharing a location from London
    assert [shop.code for shop in found] == ["JAP-01"]
    assert found[0].distance_km > 10_000
    assert await nearest(session, -6.9, 107.6, limit=0) == []
    for bad in ((91.0, 107.0), (0.0, 181.0), (math.nan, 107.0), (0.0, math.inf)):
        with pytest.raises(ValueError):
            await nearest(session, *bad)


def test_box_safe_radius_is_conservative() -> None:
    """Every point on the box's edge is at least the safe radius away from its centre."""
    for latitude in (-11.0, -6.9, 0.0, 6.0, 45.0):
        for width in ewarongs.SEARCH_BOXES:
            radius = ewarongs._box_safe_radius_km(latitude, width)
            edge = [
                (latitude + width * t, longitude)
                for t in (-1, -0.5, 0, 0.5, 1)
                for longitude in (107.0 - width, 107.0 + width)
            ] + [(latitude + width * s, 107.0 + width * t) for s in (-1, 1) for t in (-1, 0, 1)]
            closest = min(haversine_km(latitude, 107.0, lat, lon) for lat, lon in edge)
            assert radius <= closest + 1e-9
