"""One-time BPNT shopping codes: issued to a family in the bot, shown at the counter.

A code is 12 digits, valid 10 minutes, stored only as a keyed hash; a new code voids
the family's older ones, and a redemption uses its code up in the statement that
debits (see services.bpnt.redemptions).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Beneficiary, ShoppingCode
from services.bpnt import ledger
from services.identity import Hasher

CODE_TTL = timedelta(minutes=10)
# 10^12 codes: with a million live codes at once, 1,000 guesses hit one with probability
# 1000 × 10^6 / 10^12 = 0.001 (README, "Security and privacy"); a 16-digit number is a KKS.
CODE_DIGITS = 12


class CodeResult(StrEnum):
    ISSUED = "issued"
    NOT_BPNT = "not_bpnt"
    NOT_PROCESSABLE = "not_processable"  # locked by the family or frozen by a dispute


@dataclass(frozen=True)
class IssuedCode:
    result: CodeResult
    code: str | None = None
    expires_at: datetime | None = None


def shown_code(code: str) -> str:
    """`482910573362` -> `4829 1057 3362`, easier to read out at the counter."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def code_hash(hasher: Hasher, code: str) -> str:
    return hasher.digest("shopping-code", code)


def active_code_filter(now: datetime) -> Any:
    """A code that is neither used, voided nor expired at `now`."""
    return and_(
        ShoppingCode.used_at.is_(None),
        ShoppingCode.voided_at.is_(None),
        ShoppingCode.expires_at > now,
    )


async def void_active_codes(session: AsyncSession, beneficiary_id: int, now: datetime) -> None:
    """Void the family's codes that are still active at `now`."""
    await session.execute(
        update(ShoppingCode)
        .where(ShoppingCode.beneficiary_id == beneficiary_id, active_code_filter(now))
        .values(voided_at=now)
    )


async def issue_code(
    session: AsyncSession, beneficiary: Beneficiary, hasher: Hasher, now: datetime
) -> IssuedCode:
    """A new 12-digit code for the family, valid 10 minutes; it voids any older one."""
    if not beneficiary.is_bpnt:
        return IssuedCode(CodeResult.NOT_BPNT)
    _, locked, frozen = await ledger.wallet_state(session, beneficiary.id)
    if locked or frozen:
        return IssuedCode(CodeResult.NOT_PROCESSABLE)
    await void_active_codes(session, beneficiary.id, now)
    while True:  # no two families may hold the same active code
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if code.startswith("0"):  # people drop leading zeros; and it reads like a number
            continue
        taken = await session.scalar(
            select(ShoppingCode.id).where(
                ShoppingCode.code_hash == code_hash(hasher, code), active_code_filter(now)
            )
        )
        if taken is None:
            break
    expires = now + CODE_TTL
    session.add(
        ShoppingCode(
            beneficiary_id=beneficiary.id,
            code_hash=code_hash(hasher, code),
            created_at=now,
            expires_at=expires,
        )
    )
    await session.flush()
    return IssuedCode(CodeResult.ISSUED, code, expires)


async def void_codes(session: AsyncSession, beneficiary_id: int, now: datetime) -> None:
    """Cancel the family's live codes (shown on a phone it no longer holds, say)."""
    await session.execute(
        update(ShoppingCode)
        .where(
            ShoppingCode.beneficiary_id == beneficiary_id,
            ShoppingCode.used_at.is_(None),
            ShoppingCode.voided_at.is_(None),
        )
        .values(voided_at=now)
    )


async def use_code(session: AsyncSession, code_id: int, now: datetime) -> bool:
    """Use the code up for a redemption, in one statement only an active code passes."""
    result = await session.execute(
        update(ShoppingCode)
        .where(ShoppingCode.id == code_id, active_code_filter(now))
        .values(used_at=now)
    )
    return result.rowcount == 1


async def release_code(session: AsyncSession, code_id: int) -> None:
    """Undo `use_code` in the same transaction (the redemption was refused after it)."""
    await session.execute(
        update(ShoppingCode).where(ShoppingCode.id == code_id).values(used_at=None)
    )
