"""The relayed chat of an accepted Napza request: the requester and the owning partner's
staff write through the bot, neither seeing the other's Telegram account.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import HelpRequest, RelayMessage
from models.enums import RelaySender, RequestStatus
from services import audit
from services.napza.common import fresh, is_staff, require_aware

RELAY_MAX = 2000


async def active_request_of(
    session: AsyncSession, requester_telegram_id: int
) -> HelpRequest | None:
    """The requester's most recent accepted request (the one a relayed chat goes to), or None."""
    return await session.scalar(
        select(HelpRequest)
        .where(
            HelpRequest.requester_telegram_id == requester_telegram_id,
            HelpRequest.status == RequestStatus.ACCEPTED,
        )
        .order_by(HelpRequest.accepted_at.desc(), HelpRequest.id.desc())
        .limit(1)
    )


async def requester_chat(
    session: AsyncSession, request_id: int, requester_telegram_id: int
) -> HelpRequest | None:
    """The request when it is the requester's own and accepted (a chat can open), else None."""
    if not 0 < request_id < 2**63:
        return None
    return await session.scalar(
        select(HelpRequest).where(
            HelpRequest.id == request_id,
            HelpRequest.requester_telegram_id == requester_telegram_id,
            HelpRequest.status == RequestStatus.ACCEPTED,
        )
    )


async def add_relay(
    session: AsyncSession,
    request_id: int,
    sender: RelaySender | str,
    text: str,
    now: datetime,
    staff_id: int | None = None,
) -> int | None:
    """Store a relayed message; the counterpart's Telegram id, or None unless accepted.

    Partner messages go to the requester, requester messages to the staff member who
    accepted. Raises ValueError for an unknown sender or a text that is empty or
    longer than 2000 characters (handlers check first). Audited without the text.
    """
    require_aware(now)
    try:
        sender = RelaySender(sender)
    except ValueError:
        raise ValueError("sender must be one of " + ", ".join(RelaySender)) from None
    text = storable(text)
    if not text or len(text) > RELAY_MAX:
        raise ValueError(f"text must be 1-{RELAY_MAX} characters")
    request = await fresh(session, request_id)
    if request is None or request.status != RequestStatus.ACCEPTED or request.partner_code is None:
        return None
    if request.requester_telegram_id is None:  # erased: nobody to talk to any more
        return None
    # Only current staff of the owning partner may write, and only to a staff member
    # who is still there: a removed member neither sends nor receives.
    if sender is RelaySender.PARTNER and (
        staff_id is None or not await is_staff(session, request.partner_code, staff_id)
    ):
        return None
    if request.accepted_by is None or not await is_staff(
        session, request.partner_code, request.accepted_by
    ):
        return None
    session.add(RelayMessage(request_id=request_id, sender=sender, text=text, created_at=now))
    await session.execute(
        update(HelpRequest)
        .where(HelpRequest.id == request_id)
        .values(last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await audit.record(
        session,
        "napza.relayed",
        subject_type="help_request",
        subject_id=request.ticket,
        sender=sender,
        length=len(text),
    )
    return request.requester_telegram_id if sender is RelaySender.PARTNER else request.accepted_by


async def relay_transcript(session: AsyncSession, request_id: int) -> list[RelayMessage]:
    """The relayed messages of a request, oldest first (empty once purged)."""
    result = await session.scalars(
        select(RelayMessage)
        .where(RelayMessage.request_id == request_id)
        .order_by(RelayMessage.created_at, RelayMessage.id)
    )
    return list(result)
