"""The synthetic demo registry: deterministic, consistent, idempotent."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Beneficiary, BpntWallet, Disbursement, LedgerEntry
from sandbox.demo import FIXED_FAMILIES, demo_families, generate_demo, nik_for
from services.bpnt import ledger as wallet
from services.identity import Hasher, nik_problem
from services.imports.rules import birth_date_matches_nik
from services.regions import RegionDirectory, region_name, zone_abbreviation
from tests.conftest import TEST_SECRET

HASHER = Hasher(TEST_SECRET.encode())
TODAY = date(2026, 5, 20)


async def row_counts(session: AsyncSession) -> tuple[int, ...]:
    """Rows in the registry, disbursement, wallet and ledger tables."""
    models = (Beneficiary, Disbursement, BpntWallet, LedgerEntry)
    return tuple(
        [
            (await session.execute(select(func.count()).select_from(model))).scalar_one()
            for model in models
        ]
    )


async def test_demo_is_consistent_and_idempotent(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    people = await generate_demo(sessionmaker, HASHER, families=30, seed=7, today=TODAY)
    assert len(people) == 30
    assert [p.nik for p in people[:4]] == [f.nik for f in FIXED_FAMILIES]
    siti = people[0]
    assert (siti.nik, siti.name, siti.birth_date, siti.phone) == (
        "3204105507850003",
        "Siti Aminah",
        date(1985, 7, 15),
        "081234567890",
    )
    assert (siti.programs, siti.village_code, siti.village_name) == (
        ("PKH", "BPNT"),
        "32.04.10.2001",
        "Margaasih",
    )
    directory = await RegionDirectory.load(session)
    for person in people:
        assert nik_problem(person.nik, directory.province_codes) is None
        assert birth_date_matches_nik(person.nik, person.birth_date)
        assert person.nik[:6] == person.village_code.replace(".", "")[:6]
        assert await region_name(session, person.village_code) == person.village_name
        assert await directory.village_exists(session, person.village_code)
    assert len({p.nik for p in people}) == 30
    assert {zone_abbreviation(p.village_code) for p in people} >= {"WIB", "WITA", "WIT"}
    assert {p.programs for p in people} >= {("PKH",), ("BPNT",), ("PKH", "BPNT")}
    assert any(p.phone is None and p.programs == ("BPNT",) for p in people[:4])
    assert any(
        p.programs == ("PKH",) and zone_abbreviation(p.village_code) == "WITA" for p in people
    )

    before = await row_counts(session)
    again = await generate_demo(sessionmaker, HASHER, families=30, seed=7, today=TODAY)
    assert again == people
    assert await row_counts(session) == before
    assert before[0] == 30


async def test_demo_money_follows_the_rules(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    await generate_demo(sessionmaker, HASHER, families=40, seed=11, today=TODAY)
    siti = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == HASHER.nik("3204105507850003"))
    )
    assert siti is not None
    assert siti.phone_hash == HASHER.phone("+6281234567890")
    assert {c.component: c.count for c in siti.components} == {"anak_sd": 2, "lansia": 1}
    stages = dict(
        (
            await session.execute(
                select(Disbursement.period, Disbursement.amount).where(
                    Disbursement.beneficiary_id == siti.id, Disbursement.program == "PKH"
                )
            )
        ).all()
    )
    # (2 × Rp900.000 + Rp2.400.000) / 4 per stage; T1 past, T2 current (May).
    assert stages == {"2026-T1": 1_050_000, "2026-T2": 1_050_000}
    budi = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == HASHER.nik("3578010903720001"))
    )
    assert budi is not None and budi.phone_hash is None and not budi.is_pkh

    rows = (await session.execute(select(Disbursement))).scalars().all()
    assert all(r.date <= TODAY for r in rows)
    assert {r.period for r in rows if r.program == "BPNT"} <= {f"2026-{m:02d}" for m in range(1, 6)}
    assert all(r.amount == 200_000 for r in rows if r.program == "BPNT")
    current = {r.status for r in rows if r.period == "2026-T2"}
    assert current <= {"ditetapkan", "diproses"}
    assert {r.status for r in rows if r.period == "2026-T1"} <= {"disalurkan", "gagal"}

    for family_id in {r.beneficiary_id for r in rows if r.program == "BPNT"}:
        credited = sum(
            r.amount
            for r in rows
            if r.beneficiary_id == family_id and r.program == "BPNT" and r.status == "disalurkan"
        )
        assert await wallet.balance(session, family_id) == credited


async def test_demo_in_january_has_only_the_first_stage_and_month(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    await generate_demo(sessionmaker, HASHER, families=10, today=date(2027, 1, 1))
    periods = set((await session.execute(select(Disbursement.period))).scalars())
    assert periods <= {"2027-T1", "2027-01"}


def test_same_seed_same_families_other_seed_others() -> None:
    villages = {"32": ["32.04.10.2001", "32.04.10.2002"], "73": ["73.71.01.1006"]}
    first = demo_families(5, 12, TODAY, villages)
    assert first == demo_families(5, 12, TODAY, villages)
    other = demo_families(6, 12, TODAY, villages)
    assert first[:4] == other[:4]
    assert [f.nik for f in first[4:]] != [f.nik for f in other[4:]]
    assert len(demo_families(5, 2, TODAY, villages)) == len(FIXED_FAMILIES)


def test_nik_encodes_district_birth_date_and_sex() -> None:
    assert nik_for("32.04.10.2001", date(1985, 7, 15), True, 3) == "3204105507850003"
    assert nik_for("35.78.01.1002", date(1972, 3, 9), False, 1) == "3578010903720001"


async def test_demo_has_ewarongs_near_the_fixed_families(sessionmaker, session) -> None:
    from services.bpnt.ewarongs import nearest

    await generate_demo(sessionmaker, HASHER, families=5, seed=1, today=TODAY)
    near_siti = await nearest(session, -6.95, 107.55, 3)
    assert near_siti[0].code == "EW-3204-001" and near_siti[0].distance_km < 1
    near_jayapura = await nearest(session, -2.54, 140.70, 1)
    assert near_jayapura[0].code == "EW-9171-001"
