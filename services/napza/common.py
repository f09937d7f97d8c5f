"""What the Napza modules share: tickets, fresh reads of a request, who is staff of a
partner or admin of a region, ending an offer, and the audit of a refused action.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import AccountRole, HelpRequest, HelpRequestOffer, PartnerOrganisation
from models.enums import OfferEnd, Role
from services import audit
from services.accounts import admins_for_region

TICKET_PREFIX = "NPZ-"
TICKET_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
TICKET_LENGTH = 6
TICKET_RE = re.compile(rf"^{TICKET_PREFIX}[{TICKET_ALPHABET}]{{{TICKET_LENGTH}}}$")


def new_ticket() -> str:
    """`NPZ-` and six characters from an alphabet without look-alikes."""
    return TICKET_PREFIX + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))


def normalize_ticket(text: str) -> str:
    """A typed ticket in its stored form (`npz-7f3k2q` -> `NPZ-7F3K2Q`)."""
    cleaned = storable(text).strip().upper().replace(" ", "")
    if not cleaned.startswith(TICKET_PREFIX) and len(cleaned) == TICKET_LENGTH:
        cleaned = TICKET_PREFIX + cleaned
    return cleaned


def require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")


def rowcount(result: Any) -> int:
    return int(result.rowcount)


async def fresh(session: AsyncSession, request_id: int) -> HelpRequest | None:
    """The request as stored now (not a stale identity-map copy)."""
    return await session.get(HelpRequest, request_id, populate_existing=True)


async def get_request(session: AsyncSession, request_id: int) -> HelpRequest | None:
    """The request by id (for notifications; callers decide who may see what)."""
    if not 0 < request_id < 2**63:
        return None
    return await session.get(HelpRequest, request_id)


async def current_partner(session: AsyncSession, request_id: int) -> str | None:
    """The code of the partner the request is offered to or owned by, if any."""
    request = await get_request(session, request_id)
    return request.partner_code if request else None


async def partner(session: AsyncSession, code: str) -> PartnerOrganisation | None:
    """The partner organisation with this code, or None."""
    return await session.get(PartnerOrganisation, code)


async def staff_of(session: AsyncSession, partner_code: str) -> list[int]:
    """Telegram ids of the partner's staff, ascending."""
    result = await session.scalars(
        select(AccountRole.telegram_id)
        .where(AccountRole.role == Role.PARTNER, AccountRole.scope == partner_code)
        .order_by(AccountRole.telegram_id)
        .distinct()
    )
    return list(result)


async def is_staff(session: AsyncSession, partner_code: str, telegram_id: int) -> bool:
    found = await session.scalar(
        select(AccountRole.id).where(
            AccountRole.role == Role.PARTNER,
            AccountRole.scope == partner_code,
            AccountRole.telegram_id == telegram_id,
        )
    )
    return found is not None


async def admin_ids(session: AsyncSession, region_code: str) -> list[int]:
    """Telegram ids of the admins whose scope covers the region, ascending."""
    return sorted(account.telegram_id for account in await admins_for_region(session, region_code))


async def offered_partners(session: AsyncSession, request_id: int) -> set[str]:
    """The codes of every partner the request was ever offered to."""
    result = await session.scalars(
        select(HelpRequestOffer.partner_code).where(HelpRequestOffer.request_id == request_id)
    )
    return set(result)


async def end_offer(
    session: AsyncSession,
    request_id: int,
    partner_code: str | None,
    reason: OfferEnd,
    now: datetime,
    by: int | None = None,
) -> None:
    """Mark the open offer of `partner_code` (any open one when None) as ended."""
    statement = update(HelpRequestOffer).where(
        HelpRequestOffer.request_id == request_id, HelpRequestOffer.ended_at.is_(None)
    )
    if partner_code is not None:
        statement = statement.where(HelpRequestOffer.partner_code == partner_code)
    await session.execute(
        statement.values(ended_at=now, end_reason=reason, ended_by=by).execution_options(
            synchronize_session=False
        )
    )


async def refused(
    session: AsyncSession, action: str, request_id: int, partner_code: str, actor: int
) -> None:
    """Audit an action or view a partner's staff member was refused (by request id)."""
    await audit.record(
        session,
        action,
        actor=actor,
        subject_type="help_request_id",
        subject_id=request_id,
        partner=partner_code,
    )
