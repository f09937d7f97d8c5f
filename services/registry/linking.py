"""Linking a Telegram account to a beneficiary, with a factor a stranger cannot derive.

A NIK is printed on the KTP and its digits hold the birth date, so neither is a
secret. The account proves the family with one of:

- the phone number of this Telegram account (shared with Telegram's contact button,
  so Telegram vouches for it), equal to the phone in the registry, plus NIK and birth
  date; or
- a one-time activation code from the pendamping or village office, plus the NIK
  (`services.registry.activation`), for families without a phone in the registry.

Every refusal reads the same ("does not match"), whatever the reason: unknown NIK,
wrong factor, or a family already linked to another account (which would otherwise
tell a stranger that a NIK belongs to a KPM; that account is told someone tried).
Failures count per Telegram account, per NIK (whichever accounts typed it) and under
a country-wide ceiling a minute (`FailureGuard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import Account, Beneficiary
from services import audit, outbox
from services.bpnt.codes import void_codes
from services.identity import Hasher, clean_digits
from services.lockout import FailureGuard
from services.outbox import NoticeKind
from services.registry import activation

REASON_MAX = 500


class LinkResult(StrEnum):
    LINKED = "linked"
    NO_MATCH = "no_match"
    LOCKED = "locked"
    ALREADY_LINKED = "already_linked"


@dataclass(frozen=True)
class LinkOutcome:
    result: LinkResult
    attempts_left: int = 0
    locked_seconds: float = 0.0
    beneficiary: Beneficiary | None = None


@dataclass(frozen=True)
class LinkClaim:
    """What the user proved: the NIK (hashed) and either the Telegram-verified phone
    (hashed) with the birth date, or an activation code (normalized)."""

    nik_hash: str
    phone_hash: str | None = None
    birth_date: date | None = None
    activation_code: str | None = None


async def locked_for(guard: FailureGuard, telegram_id: int, nik_hash: str | None = None) -> float:
    """Seconds the account (or this NIK, or everyone) must wait before trying, 0 if none."""
    return await guard.locked_for(account=telegram_id, nik=nik_hash)


async def _proves(
    session: AsyncSession, beneficiary: Beneficiary, claim: LinkClaim, hasher: Hasher, now: datetime
) -> bool:
    if claim.activation_code is not None:
        return await activation.is_valid(
            session, hasher, beneficiary.id, claim.activation_code, now
        )
    return (
        beneficiary.phone_hash is not None
        and claim.phone_hash is not None
        and beneficiary.phone_hash == claim.phone_hash
        and beneficiary.birth_date == claim.birth_date
    )


async def _refuse(
    session: AsyncSession, account: Account, claim: LinkClaim, guard: FailureGuard
) -> LinkOutcome:
    left = await guard.fail(account=account.telegram_id, nik=claim.nik_hash)
    await audit.record(
        session, "link.failed", actor=account.telegram_id, attempts_left=left,
        factor="activation_code" if claim.activation_code else "phone",
    )  # fmt: skip
    if left == 0:
        return LinkOutcome(LinkResult.LOCKED, locked_seconds=float(guard.seconds))
    return LinkOutcome(LinkResult.NO_MATCH, attempts_left=left)


async def link_account(
    session: AsyncSession,
    account: Account,
    claim: LinkClaim,
    guard: FailureGuard,
    hasher: Hasher,
    now: datetime,
) -> LinkOutcome:
    """Link `account` to the beneficiary the claim proves, if it does and nothing forbids it."""
    if account.beneficiary_id is not None:
        return LinkOutcome(LinkResult.ALREADY_LINKED)
    if locked := await locked_for(guard, account.telegram_id, claim.nik_hash):
        return LinkOutcome(LinkResult.LOCKED, locked_seconds=locked)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == claim.nik_hash)
    )
    if beneficiary is None or not await _proves(session, beneficiary, claim, hasher, now):
        return await _refuse(session, account, claim, guard)
    holder = await session.scalar(
        select(Account.telegram_id).where(Account.beneficiary_id == beneficiary.id)
    )
    if holder is not None:  # proven, but the family is someone else's: tell them, not this one
        await audit.record(
            session, "link.refused_linked_elsewhere", actor=account.telegram_id,
            subject_type="beneficiary", subject_id=beneficiary.id, holder=holder,
        )  # fmt: skip
        await outbox.enqueue(session, holder, NoticeKind.LINK_ATTEMPT, now)
        return await _refuse(session, account, claim, guard)
    if claim.activation_code is not None and not await activation.use(
        session, hasher, beneficiary.id, claim.activation_code, account.telegram_id, now
    ):  # used up by a concurrent link a moment ago
        return await _refuse(session, account, claim, guard)
    # Two accounts racing for one family: the unique index refuses the second, whose
    # update then fails as a whole (rolled back, the user is asked to try again).
    account.beneficiary_id = beneficiary.id
    account.linked_at = now
    await session.flush()
    await guard.clear("account", account.telegram_id)
    await guard.clear("nik", claim.nik_hash)
    await audit.record(
        session, "link.linked", actor=account.telegram_id, subject_type="beneficiary",
        subject_id=beneficiary.id,
        factor="activation_code" if claim.activation_code else "phone",
    )  # fmt: skip
    return LinkOutcome(LinkResult.LINKED, beneficiary=beneficiary)


class UnlinkResult(StrEnum):
    UNLINKED = "unlinked"
    NOT_FOUND = "not_found"  # no family with this NIK
    NOT_LINKED = "not_linked"
    NO_REASON = "no_reason"


@dataclass(frozen=True)
class UnlinkOutcome:
    result: UnlinkResult
    beneficiary: Beneficiary | None = None
    telegram_id: int | None = None  # the account that was unlinked


async def unlink(
    session: AsyncSession,
    hasher: Hasher,
    nik: str,
    reason: str,
    now: datetime,
    *,
    actor: int | None = None,
) -> UnlinkOutcome:
    """An operator takes the family's link away from its Telegram account (its phone
    changed, or a stranger took it over); the family can link again afterwards.

    Live shopping codes of the family are voided (they were shown on that account),
    the reason is audited, and the old account is told (through the outbox).
    """
    reason = " ".join(storable(reason).split())[:REASON_MAX]
    if not reason:
        return UnlinkOutcome(UnlinkResult.NO_REASON)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.nik_hash == hasher.nik(clean_digits(nik)))
    )
    if beneficiary is None:
        return UnlinkOutcome(UnlinkResult.NOT_FOUND)
    account = await session.scalar(select(Account).where(Account.beneficiary_id == beneficiary.id))
    if account is None:
        return UnlinkOutcome(UnlinkResult.NOT_LINKED, beneficiary)
    account.beneficiary_id = None
    account.linked_at = None
    await void_codes(session, beneficiary.id, now)
    await audit.record(
        session, "account.unlinked", actor=actor, subject_type="beneficiary",
        subject_id=beneficiary.id, account=account.telegram_id, reason=reason,
    )  # fmt: skip
    await outbox.enqueue(session, account.telegram_id, NoticeKind.UNLINKED, now)
    await session.flush()
    return UnlinkOutcome(UnlinkResult.UNLINKED, beneficiary, account.telegram_id)
