"""Linking a Telegram account to a beneficiary: phone + NIK + birth date must match.

The outcome never tells which field was wrong. Failures count toward a lockout;
a beneficiary already linked to another Telegram account is refused and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services import audit
from bot.services.lockout import Lockout
from models import Account, Beneficiary


class LinkResult(StrEnum):
    LINKED = "linked"
    NO_MATCH = "no_match"
    LOCKED = "locked"
    LINKED_ELSEWHERE = "linked_elsewhere"
    ALREADY_LINKED = "already_linked"


@dataclass(frozen=True)
class LinkOutcome:
    result: LinkResult
    attempts_left: int = 0
    locked_seconds: float = 0.0
    beneficiary: Beneficiary | None = None


@dataclass(frozen=True)
class LinkClaim:
    """What the user proved: their own phone (hashed), NIK (hashed) and birth date."""

    phone_hash: str
    nik_hash: str
    birth_date: date


def _matches(beneficiary: Beneficiary, claim: LinkClaim) -> bool:
    if beneficiary.birth_date != claim.birth_date:
        return False
    return beneficiary.phone_hash is None or beneficiary.phone_hash == claim.phone_hash


async def link_account(
    session: AsyncSession, account: Account, claim: LinkClaim, lockout: Lockout, now: datetime
) -> LinkOutcome:
    """Link `account` to the beneficiary the claim proves, if it does and nothing forbids it."""
    if account.beneficiary_id is not None:
        return LinkOutcome(LinkResult.ALREADY_LINKED)
    if locked := await lockout.locked_for(account.telegram_id):
        return LinkOutcome(LinkResult.LOCKED, locked_seconds=locked)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == claim.nik_hash)
    )
    if beneficiary is None or not _matches(beneficiary, claim):
        left = await lockout.fail(account.telegram_id)
        await audit.record(session, "link.failed", actor=account.telegram_id, attempts_left=left)
        if left == 0:
            return LinkOutcome(LinkResult.LOCKED, locked_seconds=float(lockout.seconds))
        return LinkOutcome(LinkResult.NO_MATCH, attempts_left=left)
    holder = await session.scalar(select(Account).where(Account.beneficiary_id == beneficiary.id))
    if holder is not None:
        await audit.record(
            session,
            "link.refused_linked_elsewhere",
            actor=account.telegram_id,
            subject_type="beneficiary",
            subject_id=beneficiary.id,
            holder=holder.telegram_id,
        )
        return LinkOutcome(LinkResult.LINKED_ELSEWHERE)
    # Two accounts racing for one family: the unique index refuses the second, whose
    # update then fails as a whole (rolled back, the user is asked to try again).
    account.beneficiary_id = beneficiary.id
    account.linked_at = now
    await session.flush()
    await lockout.clear(account.telegram_id)
    await audit.record(
        session,
        "link.linked",
        actor=account.telegram_id,
        subject_type="beneficiary",
        subject_id=beneficiary.id,
    )
    return LinkOutcome(LinkResult.LINKED, beneficiary=beneficiary)
