"""One-time activation codes: the second factor for families without a registry phone.

A NIK is no secret (its digits even hold the birth date), so a family whose registry
row has no phone cannot prove itself with what it knows. Its pendamping or the village
office issues an activation code (`bansos-bot activation issue NIK`, or many at once
from a file) and hands it over on paper; the family types NIK and code in the bot.

A code is 10 characters of an alphabet without look-alikes (0/O, 1/I/L), shown as
`XXXXX-XXXXX` (31^10 ≈ 8·10^14 codes), valid `ACTIVATION_CODE_DAYS` days, single use;
a new code for the same family voids the older one. Only its HMAC is stored.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, ActivationCode, Beneficiary
from services import audit
from services.identity import Hasher, clean_digits, mask_name

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
LENGTH = 10
CODE_RE = re.compile(rf"^[{ALPHABET}]{{{LENGTH}}}$")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def shown(code: str) -> str:
    """`K7M2P9QX4R` -> `K7M2P-9QX4R`, as printed for the family."""
    return f"{code[:5]}-{code[5:]}"


def normalize(text: str) -> str | None:
    """A typed code (any case, with spaces or dashes) in its stored form, or None."""
    code = re.sub(r"[\s\-.]", "", text).upper()
    return code if CODE_RE.match(code) else None


def code_hash(hasher: Hasher, code: str) -> str:
    return hasher.digest("activation", code)


class IssueResult(StrEnum):
    ISSUED = "issued"
    NOT_FOUND = "not_found"  # no family with this NIK
    LINKED = "linked"  # already linked: unlink it first (`account unlink`)
    INVALID = "invalid"  # not 16 digits


@dataclass(frozen=True)
class IssuedActivation:
    result: IssueResult
    code: str | None = None
    expires_at: datetime | None = None
    masked_name: str = ""
    nik_last4: str = ""
    village_code: str = ""


async def issue(
    session: AsyncSession,
    hasher: Hasher,
    nik: str,
    now: datetime,
    ttl: timedelta,
    *,
    actor: int | None = None,
) -> IssuedActivation:
    """A new activation code for the family with this NIK (voiding any older one)."""
    nik = clean_digits(nik)
    if len(nik) != 16 or not nik.isdecimal():
        return IssuedActivation(IssueResult.INVALID)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == hasher.nik(nik))
    )
    if beneficiary is None:
        return IssuedActivation(IssueResult.NOT_FOUND)
    if await session.scalar(
        select(Account.telegram_id).where(Account.beneficiary_id == beneficiary.id)
    ):
        return IssuedActivation(IssueResult.LINKED, nik_last4=beneficiary.nik_last4)
    await session.execute(
        update(ActivationCode)
        .where(
            ActivationCode.beneficiary_id == beneficiary.id,
            ActivationCode.used_at.is_(None),
            ActivationCode.voided_at.is_(None),
        )
        .values(voided_at=now)
    )
    code = new_code()
    session.add(
        ActivationCode(
            beneficiary_id=beneficiary.id,
            code_hash=code_hash(hasher, code),
            created_at=now,
            expires_at=now + ttl,
        )
    )
    await session.flush()
    await audit.record(
        session, "activation.issued", actor=actor, subject_type="beneficiary",
        subject_id=beneficiary.id, days=ttl.days,
    )  # fmt: skip
    return IssuedActivation(
        IssueResult.ISSUED,
        code=code,
        expires_at=now + ttl,
        masked_name=mask_name(beneficiary.name),
        nik_last4=beneficiary.nik_last4,
        village_code=beneficiary.village_code,
    )


async def issue_many(
    session: AsyncSession,
    hasher: Hasher,
    niks: Iterable[tuple[int, str]],
    now: datetime,
    ttl: timedelta,
) -> list[tuple[int, IssuedActivation]]:
    """One code per (line, NIK), in order; lines whose NIK gets no code say why."""
    return [(line, await issue(session, hasher, nik, now, ttl)) for line, nik in niks]


async def is_valid(
    session: AsyncSession, hasher: Hasher, beneficiary_id: int, code: str, now: datetime
) -> bool:
    """Whether `code` is this family's live activation code (nothing is used up)."""
    return (
        await session.scalar(
            select(ActivationCode.id).where(
                ActivationCode.code_hash == code_hash(hasher, code),
                ActivationCode.beneficiary_id == beneficiary_id,
                ActivationCode.used_at.is_(None),
                ActivationCode.voided_at.is_(None),
                ActivationCode.expires_at > now,
            )
        )
        is not None
    )


async def use(
    session: AsyncSession,
    hasher: Hasher,
    beneficiary_id: int,
    code: str,
    telegram_id: int,
    now: datetime,
) -> bool:
    """Use the code up for `telegram_id`: one conditional UPDATE, so it works once."""
    result = await session.execute(
        update(ActivationCode)
        .where(
            ActivationCode.code_hash == code_hash(hasher, code),
            ActivationCode.beneficiary_id == beneficiary_id,
            ActivationCode.used_at.is_(None),
            ActivationCode.voided_at.is_(None),
            ActivationCode.expires_at > now,
        )
        .values(used_at=now, used_by=telegram_id)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
