"""Who you can be in the sandbox: personas as data, demo places, and their database setup.

A persona is one simulated Telegram user (its own id, name, language and phone)
plus an optional *setup hook* that puts the database into the state the persona
promises, e.g. "KPM, already linked". The sandbox runs every hook after the demo
registry is generated, on start and again after a reset; hooks must be idempotent.

Adding a role is one entry in ``PERSONAS`` with a hook: the e-Warong agent is
``setup=agent_of("EW-3204-001")``, the partner organisation's staff member
``setup=staff_of("IPWL-35")``. The page lists whatever is in ``PERSONAS``.

``PLACES`` are points a persona can share with the "share location" button.
Identities shown to type (NIK, birth date, phone) come from the demo registry
itself (``sandbox.demo``), not from here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Account, AccountRole, Beneficiary, EWarong, PartnerOrganisation
from models.enums import Role
from services import accounts, audit
from services.identity import Hasher

log = logging.getLogger(__name__)

SITI_NIK = "3204105507850003"  # the demo registry's fixed Siti Aminah (sandbox.demo)


class PersonaSetupError(RuntimeError):
    """A persona's setup cannot be applied (e.g. its family is not in the registry)."""


PersonaSetup = Callable[[AsyncSession, Hasher, "Persona"], Awaitable[None]]


@dataclass(frozen=True)
class Persona:
    """A simulated Telegram user of the sandbox and the state it starts in."""

    key: str
    telegram_id: int
    first_name: str
    language_code: str
    phone_number: str
    description_id: str
    description_en: str
    role: str  # "kpm", "agent", "partner", "admin"
    setup: PersonaSetup | None = None
    last_name: str | None = None

    @property
    def name(self) -> str:
        """The full name as Telegram shows it."""
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name

    def description(self, locale: str) -> str:
        """The one-line description in the page's language."""
        return self.description_en if locale == "en" else self.description_id

    def user_spec(self) -> dict[str, Any]:
        """The emulator's ``POST /control/users`` body for this persona."""
        return {
            "id": self.telegram_id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "language_code": self.language_code,
            "phone_number": self.phone_number,
        }


@dataclass(frozen=True)
class Place:
    """A point to share with the "share location" button."""

    key: str
    name: str
    note_id: str
    note_en: str
    latitude: float
    longitude: float


# --------------------------------------------------------------------------- setup hooks


def linked_to(nik: str) -> PersonaSetup:
    """A hook that links the persona's Telegram account to the family with this NIK."""

    async def setup(session: AsyncSession, hasher: Hasher, persona: Persona) -> None:
        beneficiary = await session.scalar(
            select(Beneficiary).where(Beneficiary.nik_hash == hasher.nik(nik))
        )
        if beneficiary is None:
            raise PersonaSetupError(f"{persona.name}: the family is not in the registry")
        account = await accounts.get_or_create(session, persona.telegram_id, persona.language_code)
        if account.beneficiary_id == beneficiary.id:
            return
        holder = await session.scalar(
            select(Account).where(Account.beneficiary_id == beneficiary.id)
        )
        if holder is not None:
            raise PersonaSetupError(
                f"{persona.name}: the family is linked to Telegram account {holder.telegram_id}"
            )
        if account.beneficiary_id is not None:
            raise PersonaSetupError(f"{persona.name}: the account is linked to another family")
        account.beneficiary_id = beneficiary.id
        account.linked_at = datetime.now(UTC)
        await audit.record(
            session,
            "link.linked",
            actor=persona.telegram_id,
            subject_type="beneficiary",
            subject_id=beneficiary.id,
            source="sandbox",
        )
        await session.flush()

    return setup


async def national_admin(session: AsyncSession, hasher: Hasher, persona: Persona) -> None:
    """Make the persona a national admin (as ADMIN_IDS does at start)."""
    await accounts.ensure_national_admins(session, [persona.telegram_id])


def staff_role(role: str, scope: str, model: type[EWarong | PartnerOrganisation]) -> PersonaSetup:
    """A hook that gives the persona a staff `role` bound to `scope` (which must exist)."""

    async def setup(session: AsyncSession, hasher: Hasher, persona: Persona) -> None:
        account = await accounts.get_or_create(session, persona.telegram_id, persona.language_code)
        if any(r.role == role and r.scope == scope for r in account.roles):
            return
        if await session.get(model, scope) is None:
            what = "e-Warong" if model is EWarong else Role.PARTNER
            raise PersonaSetupError(f"{persona.name}: no {what} {scope} in the demo")
        account.roles.append(AccountRole(telegram_id=persona.telegram_id, role=role, scope=scope))
        await audit.record(
            session, "role.granted", subject_type="account", subject_id=persona.telegram_id,
            role=role, scope=scope, source="sandbox",
        )  # fmt: skip
        await session.flush()

    return setup


def agent_of(ewarong_code: str) -> PersonaSetup:
    """A hook that makes the persona an agent of this demo e-Warong."""
    return staff_role(Role.AGENT, ewarong_code, EWarong)


def staff_of(partner_code: str) -> PersonaSetup:
    """A hook that makes the persona a staff member of this demo partner organisation."""
    return staff_role(Role.PARTNER, partner_code, PartnerOrganisation)


# --------------------------------------------------------------------------- the data

PERSONAS: tuple[Persona, ...] = (
    Persona(
        key="siti",
        telegram_id=7100001,
        first_name="Siti",
        last_name="Aminah",
        language_code="id",
        phone_number="+6281234567890",
        description_id="KPM, sudah terhubung (PKH + BPNT, Kab. Bandung)",
        description_en="KPM, already linked (PKH + BPNT, Bandung regency)",
        role="kpm",
        setup=linked_to(SITI_NIK),
    ),
    Persona(
        key="budi",
        telegram_id=7100002,
        first_name="Budi",
        last_name="Santoso",
        language_code="id",
        # The registry has no phone for Budi: he links with NIK and his activation code.
        phone_number="+6281311223344",
        description_id="KPM, belum terhubung (BPNT, Surabaya)",
        description_en="KPM, not linked yet (BPNT, Surabaya)",
        role="kpm",
    ),
    Persona(
        key="nur",
        telegram_id=7100003,
        first_name="Nur",
        last_name="Aisyah",
        language_code="en",
        phone_number="+6285298765432",
        description_id="KPM berbahasa Inggris, belum terhubung (PKH, Makassar)",
        description_en="KPM in English, not linked yet (PKH, Makassar)",
        role="kpm",
    ),
    Persona(
        key="agen",
        telegram_id=7100005,
        first_name="Agus",
        last_name="Wijaya",
        language_code="id",
        phone_number="+6281311110005",
        description_id="Agen e-Warong Sri Rejeki (EW-3204-001, dekat Siti)",
        description_en="Agent of e-Warong Sri Rejeki (EW-3204-001, near Siti)",
        role=Role.AGENT,
        setup=agent_of("EW-3204-001"),
    ),
    Persona(
        key="mitra",
        telegram_id=7100006,
        first_name="Dewi",
        last_name="Lestari",
        language_code="id",
        phone_number="+6281311110006",
        description_id="Staf mitra IPWL Harapan Jawa Timur (menerima rujukan Napza)",
        description_en="Staff of partner IPWL Harapan Jawa Timur (receives Napza referrals)",
        role=Role.PARTNER,
        setup=staff_of("IPWL-35"),
    ),
    Persona(
        key="admin",
        telegram_id=7100004,
        first_name="Admin",
        last_name="Nasional",
        language_code="id",
        phone_number="+6281100004444",
        description_id="Admin nasional (Kemensos)",
        description_en="National admin (Ministry of Social Affairs)",
        role=Role.ADMIN,
        setup=national_admin,
    ),
)

PLACES: tuple[Place, ...] = (
    Place(
        "margaasih",
        "Desa Margaasih",
        "Kab. Bandung, Jawa Barat",
        "Bandung regency, West Java",
        -6.9447,
        107.5350,
    ),
    Place("bandung", "Alun-alun Bandung", "Kota Bandung", "Bandung city", -6.9218, 107.6071),
    Place("surabaya", "Kebraon, Surabaya", "Jawa Timur", "East Java", -7.3330, 112.6930),
    Place(
        "makassar",
        "Pantai Losari, Makassar",
        "Sulawesi Selatan",
        "South Sulawesi",
        -5.1436,
        119.4072,
    ),
    Place("jayapura", "Kota Jayapura", "Papua", "Papua", -2.5337, 140.7181),
    Place("jakarta", "Monas, Jakarta", "DKI Jakarta", "Jakarta", -6.1754, 106.8272),
)


def persona_by_key(key: str, personas: Sequence[Persona] = PERSONAS) -> Persona | None:
    """The persona with this key, or None."""
    return next((persona for persona in personas if persona.key == key), None)


def admin_ids(personas: Sequence[Persona] = PERSONAS) -> list[int]:
    """Telegram ids of the admin personas (given to the bot as ADMIN_IDS)."""
    return [persona.telegram_id for persona in personas if persona.role == Role.ADMIN]


async def seed_personas(
    sessionmaker: async_sessionmaker[AsyncSession],
    hasher: Hasher,
    personas: Sequence[Persona] = PERSONAS,
) -> list[str]:
    """Run every persona's setup hook, each in its own transaction.

    A hook that cannot apply is logged and skipped (the sandbox still starts);
    returns the problems, one line each.
    """
    problems: list[str] = []
    for persona in personas:
        if persona.setup is None:
            continue
        try:
            async with sessionmaker() as session, session.begin():
                await persona.setup(session, hasher, persona)
        except PersonaSetupError as error:
            log.warning("persona setup skipped: %s", error)
            problems.append(str(error))
    return problems
