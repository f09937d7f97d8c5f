"""Finding the family at the e-Warong counter: by its shopping code, or by KKS card.

An agent sees a masked name and the balance, nothing more; every wrong code, card,
NIK digits or card of another regency reads the same (`LookupResult.INVALID`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, Beneficiary, EWarong, ShoppingCode
from services import audit
from services.bpnt import ledger
from services.bpnt.codes import CODE_DIGITS, active_code_filter, code_hash
from services.identity import Hasher, mask_name
from services.regions import timezone_for

KKS_DIGITS = 16
REGENCY_CODE_LENGTH = 5  # "32.04": a code is only valid at e-Warongs of the family's regency


class LookupResult(StrEnum):
    FOUND = "found"
    # A wrong, expired, used or voided code, a code or card of another regency, an unknown
    # KKS number, wrong NIK digits: all read the same to the agent.
    INVALID = "invalid"
    NOT_PROCESSABLE = "not_processable"  # locked by the family or frozen by a dispute
    EWARONG_INACTIVE = "ewarong_inactive"
    USES_CODES = "uses_codes"  # a KKS number of a family on Telegram: it shows a code
    KKS_CAP = "kks_cap"  # this month's redemptions by KKS number alone are used up


@dataclass(frozen=True)
class FamilyAtCounter:
    """All an agent may see of a family: a masked name and the balance."""

    result: LookupResult
    beneficiary_id: int | None = None
    masked_name: str = ""
    balance: int = 0
    shopping_code_id: int | None = None
    agent_attested: bool = False


def regency_of(region_code: str) -> str:
    return region_code[:REGENCY_CODE_LENGTH]


def kks_month(now: datetime, region_code: str) -> str:
    """The month (`YYYY-MM`, in the e-Warong's time zone) KKS-only redemptions count in."""
    return now.astimezone(timezone_for(region_code)).strftime("%Y-%m")


async def _at_counter(
    session: AsyncSession, beneficiary: Beneficiary | None, code_id: int | None, attested: bool
) -> FamilyAtCounter:
    if beneficiary is None or not beneficiary.is_bpnt:
        return FamilyAtCounter(LookupResult.INVALID)
    balance, locked, frozen = await ledger.wallet_state(session, beneficiary.id)
    if locked or frozen:
        return FamilyAtCounter(LookupResult.NOT_PROCESSABLE)
    return FamilyAtCounter(
        LookupResult.FOUND,
        beneficiary_id=beneficiary.id,
        masked_name=mask_name(beneficiary.name),
        balance=balance,
        shopping_code_id=code_id,
        agent_attested=attested,
    )


async def find_by_code(
    session: AsyncSession, code: str, hasher: Hasher, now: datetime, ewarong: EWarong
) -> FamilyAtCounter:
    """The family holding this active code, if it lives in the e-Warong's regency."""
    if not ewarong.active:
        return FamilyAtCounter(LookupResult.EWARONG_INACTIVE)
    if len(code) != CODE_DIGITS or not code.isdecimal():
        return FamilyAtCounter(LookupResult.INVALID)
    row = (
        await session.execute(
            select(ShoppingCode.id, Beneficiary)
            .join(Beneficiary, Beneficiary.id == ShoppingCode.beneficiary_id)
            .where(
                ShoppingCode.code_hash == code_hash(hasher, code),
                active_code_filter(now),
                Beneficiary.village_code.startswith(regency_of(ewarong.village_code)),
            )
        )
    ).first()
    if row is None:
        return FamilyAtCounter(LookupResult.INVALID)
    return await _at_counter(session, row[1], row[0], attested=False)


async def is_linked(session: AsyncSession, beneficiary_id: int) -> bool:
    """Whether the family has a Telegram account linked (so it shops with codes)."""
    return (
        await session.scalar(
            select(Account.telegram_id).where(Account.beneficiary_id == beneficiary_id)
        )
        is not None
    )


async def find_by_kks(
    session: AsyncSession,
    kks_hash: str,
    nik_last4: str,
    ewarong: EWarong,
    *,
    agent: int,
    now: datetime,
    monthly_cap: int,
) -> FamilyAtCounter:
    """A family without Telegram, by its KKS card number (hashed) and the last four digits
    of the NIK on the holder's KTP: the card alone shows and debits nothing.

    Refused for families on Telegram (they show a code), for cards of another regency,
    and past `monthly_cap` such redemptions this month. Every lookup is audited (without
    the numbers); an unknown card and wrong digits read the same.
    """
    found = await _kks_lookup(session, kks_hash, nik_last4, ewarong, now, monthly_cap)
    await audit.record(
        session, "redemption.kks_lookup", actor=agent, subject_type="ewarong",
        subject_id=ewarong.code, result=found.result.value, beneficiary=found.beneficiary_id,
    )  # fmt: skip
    return found


async def _kks_lookup(
    session: AsyncSession,
    kks_hash: str,
    nik_last4: str,
    ewarong: EWarong,
    now: datetime,
    monthly_cap: int,
) -> FamilyAtCounter:
    if not ewarong.active:
        return FamilyAtCounter(LookupResult.EWARONG_INACTIVE)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.kks_hash == kks_hash).limit(1)
    )
    if (
        beneficiary is None
        or not beneficiary.is_bpnt
        or not secrets.compare_digest(beneficiary.nik_last4.encode(), nik_last4.encode())
        or regency_of(beneficiary.village_code) != regency_of(ewarong.village_code)
    ):
        return FamilyAtCounter(LookupResult.INVALID)
    if await is_linked(session, beneficiary.id):
        return FamilyAtCounter(LookupResult.USES_CODES)
    month = kks_month(now, ewarong.village_code)
    if await ledger.kks_used_this_month(session, beneficiary.id, month) >= monthly_cap:
        return FamilyAtCounter(LookupResult.KKS_CAP)
    return await _at_counter(session, beneficiary, None, attested=True)
