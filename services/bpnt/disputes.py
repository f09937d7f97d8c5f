"""After the fact: a family's "Bukan saya" (not me) on a sale, and the admin's answer.

A dispute freezes the family's code flow until an admin looks; the admin reverses the
sale (the money comes back as a new ledger entry, never an edit) or dismisses the
dispute. Every decision takes the family's wallet lock first (`ledger.lock_wallet`),
so two of them run one after the other and the second sees what the first wrote.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import Account, EWarong, Redemption
from services import audit, outbox
from services.bpnt import codes, ledger
from services.bpnt.ewarongs import get_ewarong
from services.outbox import NoticeKind
from services.regions import in_scope


class DisputeResult(StrEnum):
    OPENED = "opened"
    ALREADY = "already"
    NOT_YOURS = "not_yours"


async def dispute(
    session: AsyncSession, redemption_id: int, beneficiary_id: int, actor: int, now: datetime
) -> DisputeResult:
    """ "Bukan saya": flag the transaction for admins and freeze the family's code flow."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.beneficiary_id != beneficiary_id:
        return DisputeResult.NOT_YOURS
    wallet = await ledger.lock_wallet(session, beneficiary_id)  # before reading the state
    await session.refresh(redemption)
    if redemption.disputed_at is not None or redemption.reversed_at is not None:
        return DisputeResult.ALREADY  # reported before, or already given back
    redemption.disputed_at = now
    ledger.set_frozen(wallet, True)
    await codes.void_active_codes(session, beneficiary_id, now)
    await audit.record(
        session, "redemption.disputed", actor=actor, subject_type="redemption",
        subject_id=redemption_id,
    )  # fmt: skip
    await session.flush()
    return DisputeResult.OPENED


async def sale_with_ewarong(
    session: AsyncSession, redemption_id: int
) -> tuple[Redemption, EWarong] | None:
    """The sale and its e-Warong (None when either is gone): for alerts and scope checks."""
    redemption = await session.get(Redemption, redemption_id)
    ewarong = await get_ewarong(session, redemption.ewarong_code) if redemption else None
    if redemption is None or ewarong is None:
        return None
    return redemption, ewarong


async def sale_in_scope(session: AsyncSession, redemption_id: int, scope: str) -> bool:
    """Whether the sale exists at an e-Warong inside `scope` (an admin's region)."""
    found = await sale_with_ewarong(session, redemption_id)
    return found is not None and in_scope(scope, found[1].village_code)


async def open_disputes(
    session: AsyncSession, scope: str, limit: int = 20
) -> list[tuple[Redemption, EWarong]]:
    """Open disputes at e-Warongs inside `scope`, oldest first, with their e-Warong."""
    rows = await session.execute(
        select(Redemption, EWarong)
        .join(EWarong, EWarong.code == Redemption.ewarong_code)
        .where(
            Redemption.disputed_at.is_not(None),
            Redemption.dispute_resolved_at.is_(None),
            EWarong.village_code.startswith(scope, autoescape=True),
        )
        .order_by(Redemption.disputed_at)
        .limit(limit)
    )
    return [(redemption, ewarong) for redemption, ewarong in rows.tuples()]


async def _unfreeze_if_clear(session: AsyncSession, beneficiary_id: int) -> None:
    """Unfreeze the family when no dispute of it is open; the caller holds the wallet lock
    (taken before it closed its dispute), so a dispute opened meanwhile is counted."""
    still_open = await session.scalar(
        select(func.count())
        .select_from(Redemption)
        .where(
            Redemption.beneficiary_id == beneficiary_id,
            Redemption.disputed_at.is_not(None),
            Redemption.dispute_resolved_at.is_(None),
        )
    )
    if not still_open:
        ledger.set_frozen(await ledger.lock_wallet(session, beneficiary_id), False)


class ReversalResult(StrEnum):
    REVERSED = "reversed"
    ALREADY = "already"
    NOT_FOUND = "not_found"
    NO_REASON = "no_reason"
    NOT_DISPUTED = "not_disputed"  # only a sale the family disputed, still open, is reversed


def _open_dispute() -> ColumnElement[bool]:
    return and_(
        Redemption.disputed_at.is_not(None),
        Redemption.dispute_resolved_at.is_(None),
        Redemption.reversed_at.is_(None),
    )


async def is_open_dispute(session: AsyncSession, redemption_id: int) -> bool:
    return (
        await session.scalar(
            select(Redemption.id).where(Redemption.id == redemption_id, _open_dispute())
        )
        is not None
    )


async def reverse(
    session: AsyncSession, redemption_id: int, *, admin: int, reason: str, now: datetime
) -> ReversalResult:
    """Give the money of a disputed sale back as a new ledger entry (never an edit), and
    close its dispute. Only an open dispute can be reversed: the condition is part of the
    UPDATE that claims the reversal, so no forged or replayed button gets around it."""
    reason = " ".join(storable(reason).split())[:500]
    if not reason:
        return ReversalResult.NO_REASON
    found = await session.get(Redemption, redemption_id)
    if found is None:
        return ReversalResult.NOT_FOUND
    await ledger.lock_wallet(session, found.beneficiary_id)  # the lock order of dispute/dismiss
    claimed = await session.execute(
        update(Redemption)
        .where(Redemption.id == redemption_id, _open_dispute())
        .values(reversed_at=now, reversal_reason=reason, reversed_by=admin)
    )
    redemption = await session.get(Redemption, redemption_id, populate_existing=True)
    assert redemption is not None
    if claimed.rowcount != 1:
        return ReversalResult.ALREADY if redemption.reversed_at else ReversalResult.NOT_DISPUTED
    await ledger.refund_redemption(session, redemption, now)
    redemption.dispute_resolved_at = now
    await session.flush()
    await _unfreeze_if_clear(session, redemption.beneficiary_id)
    await audit.record(
        session, "redemption.reversed", actor=admin, subject_type="redemption",
        subject_id=redemption.id, total=redemption.total, reason=reason,
    )  # fmt: skip
    await _tell_family(
        session, redemption, NoticeKind.DISPUTE_REVERSED, now, amount=redemption.total
    )
    await session.flush()
    return ReversalResult.REVERSED


async def dismiss_dispute(
    session: AsyncSession, redemption_id: int, *, admin: int, now: datetime
) -> bool:
    """The admin found the transaction genuine: close the dispute and unfreeze the family
    (unless another of its disputes is open)."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None:
        return False
    await ledger.lock_wallet(session, redemption.beneficiary_id)  # before counting disputes
    await session.refresh(redemption)
    if redemption.disputed_at is None or redemption.dispute_resolved_at or redemption.reversed_at:
        return False
    redemption.dispute_resolved_at = now
    await session.flush()
    await _unfreeze_if_clear(session, redemption.beneficiary_id)
    await audit.record(
        session, "redemption.dispute_dismissed", actor=admin, subject_type="redemption",
        subject_id=redemption_id,
    )  # fmt: skip
    await _tell_family(session, redemption, NoticeKind.DISPUTE_DISMISSED, now)
    await session.flush()
    return True


async def _tell_family(
    session: AsyncSession, redemption: Redemption, kind: NoticeKind, now: datetime, **params: int
) -> None:
    """The admin's decision, to every account linked to the family (delivered by the
    worker once this transaction commits)."""
    linked = await session.scalars(
        select(Account.telegram_id).where(Account.beneficiary_id == redemption.beneficiary_id)
    )
    for telegram_id in linked:
        await outbox.enqueue(session, telegram_id, kind, now, id=redemption.id, **params)
