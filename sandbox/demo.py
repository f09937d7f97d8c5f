"""Synthetic demo registry: families, PKH stages and BPNT months that look real.

Everything goes through the CSV importers' own validation and upserts
(`import_beneficiary_records`, `import_disbursement_records`), so the demo data
obeys the same rules as real files and BPNT wallets get their ledger credits.
The same seed (and `today`) always gives the same families; running it again
updates rather than duplicates. The people are invented; their NIKs are
structurally valid (province/regency/district of their village, birth date,
+40 for women) but belong to no one.
"""

from __future__ import annotations

import calendar
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from faker import Faker
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import ActivationCode, Beneficiary, PkhComponentRate, Region
from services.bpnt.ewarongs import import_ewarong_records
from services.identity import Hasher
from services.imports.beneficiaries import import_beneficiary_records
from services.imports.csvfile import ImportReport, records_from_dicts
from services.imports.disbursements import import_disbursement_records
from services.napza.partners import import_partner_records
from services.registry import activation

BPNT_MONTHLY = 200_000
DEMO_ACTIVATION_TTL = timedelta(days=365)

# Province code -> weight: mostly Java, some Sumatra, WITA (73, 51, 53, 64) and WIT (91, 94).
DEMO_PROVINCES: dict[str, int] = {
    "32": 5, "33": 5, "35": 5, "36": 2, "31": 1, "12": 2, "18": 2,
    "73": 2, "51": 1, "53": 2, "64": 1, "91": 1, "94": 1,
}  # fmt: skip
MOBILE_PREFIXES = ("0811", "0812", "0813", "0821", "0822", "0852", "0853", "0857", "0878", "0896")
CHILD_COMPONENTS = ("anak_usia_dini", "anak_sd", "anak_smp", "anak_sma")


class DemoError(RuntimeError):
    """The demo cannot be generated (e.g. regions not imported)."""


@dataclass(frozen=True)
class DemoIdentity:
    """What an operator needs to try the bot as one demo family (printed on purpose)."""

    nik: str
    name: str
    birth_date: date
    phone: str | None  # as a person types it, e.g. 081234567890
    programs: tuple[str, ...]
    village_code: str
    village_name: str
    kks_number: str | None = None
    # Families without a registry phone link with this (a real one comes on paper).
    activation_code: str | None = None


@dataclass
class DemoFamily:
    """One synthetic family before it is written as import rows."""

    nik: str
    name: str
    birth_date: date
    phone: str | None
    kks_number: str | None
    village_code: str
    programs: tuple[str, ...]
    components: dict[str, int] = field(default_factory=dict)


FIXED_FAMILIES: tuple[DemoFamily, ...] = (
    # DESIGN.md's example row.
    DemoFamily(
        "3204105507850003", "Siti Aminah", date(1985, 7, 15), "081234567890",
        "5264221234567890", "32.04.10.2001", ("PKH", "BPNT"), {"anak_sd": 2, "lansia": 1},
    ),
    # BPNT only, no phone in the registry (links by NIK + activation code).
    DemoFamily(
        "3578010903720001", "Budi Santoso", date(1972, 3, 9), None,
        "5264221234560001", "35.78.01.1002", ("BPNT",), {},
    ),
    # PKH only, in Makassar (WITA).
    DemoFamily(
        "7371016311900002", "Nur Aisyah", date(1990, 11, 23), "085298765432",
        "5264221234560002", "73.71.01.1006", ("PKH",), {"ibu_hamil": 1, "anak_usia_dini": 1},
    ),
    # Both programmes, in Jayapura (WIT).
    DemoFamily(
        "9171014402880004", "Maria Wenda", date(1988, 2, 4), "081344556677",
        "5264221234560004", "91.71.01.1001", ("PKH", "BPNT"), {"anak_smp": 1, "anak_sma": 1},
    ),
)  # fmt: skip


# e-Warongs near the fixed families, so the sandbox can show a whole redemption and
# "e-Warong terdekat" (coordinates are approximate, for the demo only).
DEMO_EWARONGS: tuple[dict[str, str], ...] = (
    {"code": "EW-3204-001", "name": "e-Warong Sri Rejeki", "village_code": "32.04.10.2001",
     "address": "Jl. Raya Margaasih No. 12, Kab. Bandung", "latitude": "-6.9510",
     "longitude": "107.5530", "bank": "BNI"},
    {"code": "EW-3204-002", "name": "e-Warong Maju Bersama", "village_code": "32.04.10.2001",
     "address": "Jl. Nanjung No. 4, Kab. Bandung", "latitude": "-6.9420",
     "longitude": "107.5350", "bank": "BRI"},
    {"code": "EW-3273-001", "name": "e-Warong Berkah", "village_code": "32.73.01.1001",
     "address": "Jl. Sukarasa No. 3, Kota Bandung", "latitude": "-6.8740",
     "longitude": "107.5930", "bank": "Mandiri"},
    {"code": "EW-3578-001", "name": "e-Warong Sumber Rezeki", "village_code": "35.78.01.1002",
     "address": "Jl. Kebraon Indah No. 8, Surabaya", "latitude": "-7.3330",
     "longitude": "112.6900", "bank": "BNI"},
    {"code": "EW-7371-001", "name": "e-Warong Losari", "village_code": "73.71.01.1006",
     "address": "Jl. Penghibur No. 20, Makassar", "latitude": "-5.1400",
     "longitude": "119.4080", "bank": "BRI"},
    {"code": "EW-9171-001", "name": "e-Warong Gurabesi", "village_code": "91.71.01.1001",
     "address": "Jl. Percetakan No. 5, Jayapura", "latitude": "-2.5370",
     "longitude": "140.7050", "bank": "Bank Papua"},
)  # fmt: skip


# Partner organisations for Napza referrals (names are illustrative, not real IPWL).
DEMO_PARTNERS: tuple[dict[str, str], ...] = (
    {"code": "IPWL-35", "name": "IPWL Harapan Jawa Timur", "kind": "ipwl",
     "region_codes": "35", "phone": "031-5551234", "services": "konseling; rawat jalan"},
    {"code": "IPWL-3204", "name": "IPWL Rumah Sehat Bandung", "kind": "ipwl",
     "region_codes": "32.04;32.73", "phone": "022-5556789",
     "services": "konseling; rawat jalan; rawat inap"},
)  # fmt: skip


def nik_for(village_code: str, birth_date: date, female: bool, serial: int) -> str:
    """A structurally valid NIK: the village's district code, birth date (+40 women), serial."""
    district = village_code.replace(".", "")[:6]
    day = birth_date.day + (40 if female else 0)
    return f"{district}{day:02d}{birth_date.month:02d}{birth_date.year % 100:02d}{serial:04d}"


class _FamilyMaker:
    """Draws random families from one seeded random source and Faker."""

    def __init__(self, seed: int, today: date, villages: dict[str, list[str]]) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("id_ID")
        self.fake.seed_instance(seed)
        self.today = today
        self.villages = villages
        self.provinces = [code for code in DEMO_PROVINCES if villages.get(code)]
        self.weights = [DEMO_PROVINCES[code] for code in self.provinces]
        self.niks = {family.nik for family in FIXED_FAMILIES}

    def family(self) -> DemoFamily:
        """One new family with a unique NIK."""
        rng = self.rng
        female = rng.random() < 0.85
        age = rng.randint(23, 72)
        year, month = self.today.year - age, rng.randint(1, 12)
        birth = date(year, month, rng.randint(1, calendar.monthrange(year, month)[1]))
        province = rng.choices(self.provinces, self.weights)[0]
        village = rng.choice(self.villages[province])
        nik = nik_for(village, birth, female, rng.randint(1, 9999))
        while nik in self.niks:
            nik = nik_for(village, birth, female, rng.randint(1, 9999))
        self.niks.add(nik)
        first = self.fake.first_name_female() if female else self.fake.first_name_male()
        last = self.fake.last_name_female() if female else self.fake.last_name_male()
        phone = self.fake.numerify(rng.choice(MOBILE_PREFIXES) + "########")
        kks = self.fake.numerify("526422##########")
        roll = rng.random()
        programs = ("PKH",) if roll < 0.3 else ("BPNT",) if roll < 0.6 else ("PKH", "BPNT")
        components = self.components(age) if "PKH" in programs else {}
        return DemoFamily(
            nik=nik,
            name=f"{first} {last}",
            birth_date=birth,
            phone=phone if rng.random() < 0.9 else None,
            kks_number=kks if rng.random() < 0.95 else None,
            village_code=village,
            programs=programs,
            components=components,
        )

    def components(self, age: int) -> dict[str, int]:
        """Plausible PKH components for a recipient of this age (at least one)."""
        rng = self.rng
        chosen: dict[str, int] = {}
        if age < 40 and rng.random() < 0.15:
            chosen["ibu_hamil"] = 1
        if age < 55:
            for key in rng.sample(CHILD_COMPONENTS, rng.randint(1, 3)):
                chosen[key] = rng.choice((1, 1, 1, 2, 2, 3)) if key == "anak_sd" else 1
        if age >= 55 or rng.random() < 0.2:
            chosen["lansia"] = 1
        if rng.random() < 0.08:
            chosen["disabilitas_berat"] = 1
        return chosen


def _stage_rows(
    family: DemoFamily, rng: random.Random, today: date, rates: dict[str, int]
) -> list[dict[str, str]]:
    """PKH stages of this year up to the current one (past paid, current in progress)."""
    amount = sum(count * rates[key] for key, count in family.components.items()) // 4
    if amount <= 0:
        return []
    current = (today.month - 1) // 3 + 1
    rows = []
    for stage in range(1, current + 1):
        if stage < current:
            status = "disalurkan" if rng.random() < 0.95 else "gagal"
            when = date(today.year, 3 * stage - 1, rng.randint(5, 25))
        else:
            status = rng.choice(("ditetapkan", "diproses"))
            when = min(date(today.year, 3 * stage - 2, rng.randint(1, 10)), today)
        period = f"{today.year}-T{stage}"
        rows.append(_disbursement_row(family, "PKH", period, amount, status, when))
    return rows


def _month_rows(family: DemoFamily, rng: random.Random, today: date) -> list[dict[str, str]]:
    """BPNT months of this year up to the current one (mostly credited)."""
    rows = []
    for month in range(1, today.month + 1):
        if month < today.month:
            status = "disalurkan" if rng.random() < 0.97 else "gagal"
        else:
            status = rng.choice(("diproses", "disalurkan"))
        when = min(date(today.year, month, rng.randint(1, 10)), today)
        period = f"{today.year}-{month:02d}"
        rows.append(_disbursement_row(family, "BPNT", period, BPNT_MONTHLY, status, when))
    return rows


def _disbursement_row(
    family: DemoFamily, program: str, period: str, amount: int, status: str, when: date
) -> dict[str, str]:
    """One disbursements-CSV row as text."""
    return {
        "nik": family.nik,
        "program": program,
        "period": period,
        "amount": str(amount),
        "status": status,
        "date": when.isoformat(),
    }


def _beneficiary_row(family: DemoFamily) -> dict[str, str]:
    """One beneficiaries-CSV row as text."""
    return {
        "nik": family.nik,
        "name": family.name,
        "birth_date": family.birth_date.isoformat(),
        "phone": family.phone or "",
        "kks_number": family.kks_number or "",
        "village_code": family.village_code,
        "programs": ";".join(family.programs),
        "pkh_components": ";".join(f"{key}:{n}" for key, n in family.components.items()),
    }


async def _villages(session: AsyncSession) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Village codes per demo province (sorted) and the names of all of them."""
    statement = (
        select(Region.code, Region.name)
        .where(Region.level == 4, func.substr(Region.code, 1, 2).in_(list(DEMO_PROVINCES)))
        .order_by(Region.code)
    )
    by_province: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for code, name in await session.execute(statement):
        by_province.setdefault(code[:2], []).append(code)
        names[code] = name
    return by_province, names


async def _yearly_rates(session: AsyncSession, year: int) -> dict[str, int]:
    """Yearly PKH amount per component, the latest rate valid in `year`."""
    statement = (
        select(PkhComponentRate.component, PkhComponentRate.yearly_amount)
        .where(PkhComponentRate.year <= year)
        .order_by(PkhComponentRate.year)
    )
    return {component: amount for component, amount in await session.execute(statement)}


def _check(report: ImportReport, what: str) -> None:
    """Fail loudly if generated rows were rejected (a bug in the generator)."""
    if not report.ok:
        first = report.errors[0]
        raise DemoError(f"generated {what} rejected: line {first.line}: {first.reason}")


def demo_activation_code(seed: int, nik: str) -> str:
    """The demo family's activation code, the same on every run of this seed (a sandbox
    that restarts shows codes that still work; real codes are random)."""
    digest = hashlib.sha256(f"demo-activation:{seed}:{nik}".encode()).digest()
    alphabet = activation.ALPHABET
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[: activation.LENGTH])


async def ensure_activation_codes(
    sessionmaker: async_sessionmaker[AsyncSession],
    hasher: Hasher,
    families: Sequence[DemoFamily],
    seed: int,
    now: datetime,
) -> None:
    """A live activation code for each phone-less demo family (replacing an expired or
    used one, so a sandbox kept from an earlier run still shows codes that work)."""
    async with sessionmaker() as session, session.begin():
        for family in families:
            if family.phone is not None:
                continue
            beneficiary_id = await session.scalar(
                select(Beneficiary.id).where(Beneficiary.nik_hash == hasher.nik(family.nik))
            )
            if beneficiary_id is None:
                continue
            digest = activation.code_hash(hasher, demo_activation_code(seed, family.nik))
            await session.execute(delete(ActivationCode).where(ActivationCode.code_hash == digest))
            session.add(
                ActivationCode(
                    beneficiary_id=beneficiary_id, code_hash=digest, created_at=now,
                    expires_at=now + DEMO_ACTIVATION_TTL,
                )
            )  # fmt: skip


def identity_of(family: DemoFamily, village_names: dict[str, str], seed: int) -> DemoIdentity:
    """The printable identity of a family."""
    return DemoIdentity(
        nik=family.nik,
        name=family.name,
        birth_date=family.birth_date,
        phone=family.phone,
        programs=family.programs,
        village_code=family.village_code,
        village_name=village_names.get(family.village_code, family.village_code),
        kks_number=family.kks_number,
        activation_code=(
            activation.shown(demo_activation_code(seed, family.nik))
            if family.phone is None
            else None
        ),
    )


def demo_families(
    seed: int, families: int, today: date, villages: dict[str, list[str]]
) -> list[DemoFamily]:
    """The fixed families followed by random ones, `families` in all (at least the fixed)."""
    maker = _FamilyMaker(seed, today, villages)
    extra = max(families - len(FIXED_FAMILIES), 0)
    return [*FIXED_FAMILIES, *(maker.family() for _ in range(extra))]


def demo_disbursements(
    families: Sequence[DemoFamily], seed: int, today: date, rates: dict[str, int]
) -> list[dict[str, str]]:
    """This year's PKH stages and BPNT months for the families, as CSV rows."""
    rng = random.Random(f"{seed}-disbursements")
    rows: list[dict[str, str]] = []
    for family in families:
        if "PKH" in family.programs:
            rows.extend(_stage_rows(family, rng, today, rates))
        if "BPNT" in family.programs:
            rows.extend(_month_rows(family, rng, today))
    return rows


async def generate_demo(
    sessionmaker: async_sessionmaker[AsyncSession],
    hasher: Hasher,
    *,
    families: int = 200,
    seed: int = 2024,
    today: date | None = None,
) -> list[DemoIdentity]:
    """Write a synthetic registry with this year's disbursements; returns its identities."""
    today = today or date.today()
    async with sessionmaker() as session:
        villages, names = await _villages(session)
        rates = await _yearly_rates(session, today.year)
    if any(family.village_code not in names for family in FIXED_FAMILIES):
        raise DemoError("regions are not imported: run `bansos-bot import regions` first")
    if not rates:
        raise DemoError("no PKH component rates: run `bansos-bot db upgrade` first")
    chosen = demo_families(seed, families, today, villages)
    report = await import_beneficiary_records(
        sessionmaker, records_from_dicts([_beneficiary_row(f) for f in chosen]), hasher, today=today
    )
    _check(report, "beneficiaries")
    rows = demo_disbursements(chosen, seed, today, rates)
    report = await import_disbursement_records(sessionmaker, records_from_dicts(rows), hasher)
    _check(report, "disbursements")
    report = await import_ewarong_records(sessionmaker, records_from_dicts(list(DEMO_EWARONGS)))
    _check(report, "e-Warongs")
    report = await import_partner_records(sessionmaker, records_from_dicts(list(DEMO_PARTNERS)))
    _check(report, "partners")
    await ensure_activation_codes(sessionmaker, hasher, chosen, seed, datetime.now(UTC))
    return [identity_of(family, names, seed) for family in chosen]
