"""Routing Napza help requests: choosing and offering partners, the SLA, escalation.

Routing. The candidates for a request are the ACTIVE partner organisations with
a coverage prefix that is a prefix of the request's regency code ("" covers the
whole country). They are ordered by specificity (the length of their longest
matching prefix: a regency beats a province beats national), then by how many
open requests (routing + accepted) they hold, then by code. Partners already
offered this request are skipped, and so are partners with no staff account
(nobody could answer). The first candidate gets an offer with an SLA deadline
(urgent / normal from `SlaPolicy`); when it declines or lets the deadline pass,
the next candidate gets one. When no candidate is left the request is
"escalated": the admins whose scope covers the region are told, once.

Concurrency. Every state change is one conditional UPDATE on `help_requests`
(`WHERE status = <expected> AND partner_code = <expected> ...`) whose rowcount
decides who won, so two staff pressing Accept, a decline racing the SLA worker,
or two workers expiring the same request never move it twice. `expire_due`
also selects due requests with `FOR UPDATE SKIP LOCKED` on PostgreSQL so that
parallel workers split the work instead of queueing. No savepoints are used.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    AccountRole,
    HelpRequest,
    HelpRequestNotice,
    HelpRequestOffer,
    PartnerCoverage,
    PartnerOrganisation,
)
from models.enums import OfferEnd, RequestStatus, Role
from services import audit
from services.napza.common import (
    admin_ids,
    end_offer,
    fresh,
    offered_partners,
    partner,
    require_aware,
    rowcount,
    staff_of,
)
from services.napza.partners import covering_prefixes

OPEN_STATUSES = (RequestStatus.ROUTING, RequestStatus.ACCEPTED)  # count towards a partner's load


@dataclass(frozen=True)
class SlaPolicy:
    """How long a partner has to accept an offer."""

    urgent: timedelta
    normal: timedelta

    @classmethod
    def from_settings(cls, settings: Any) -> SlaPolicy:
        """The policy of `napza_sla_urgent_minutes` / `napza_sla_normal_minutes`."""
        return cls(
            urgent=timedelta(minutes=settings.napza_sla_urgent_minutes),
            normal=timedelta(minutes=settings.napza_sla_normal_minutes),
        )

    def for_request(self, urgent: bool) -> timedelta:
        return self.urgent if urgent else self.normal


@dataclass(frozen=True)
class Delivery:
    """Who to notify after a routing step.

    `partner` set: offer the request to `staff` (all staff of that partner).
    `partner` None: the request is escalated, tell `admins`.
    `requester`: the requester's Telegram id when they should be told too
    (set on escalation by decline or SLA expiry; `create_request`'s caller is
    talking to the requester already, so it is None there).
    `withdrawn_notices`: (telegram_id, message_id) of the Accept/Decline messages
    sent for the offer that just ended (declined or expired), to be edited.
    """

    request: HelpRequest
    partner: PartnerOrganisation | None
    staff: list[int]
    admins: list[int] = field(default_factory=list)
    requester: int | None = None
    withdrawn_notices: list[tuple[int, int]] = field(default_factory=list)


# --- candidates --------------------------------------------------------------------


async def open_count_by_partner(
    session: AsyncSession, partner_codes: Sequence[str] | None = None
) -> dict[str, int]:
    """partner code -> requests routing to or accepted by it (partners with none are absent)."""
    statement = (
        select(HelpRequest.partner_code, func.count())
        .where(HelpRequest.status.in_(OPEN_STATUSES), HelpRequest.partner_code.is_not(None))
        .group_by(HelpRequest.partner_code)
    )
    if partner_codes is not None:
        statement = statement.where(HelpRequest.partner_code.in_(list(partner_codes)))
    return {code: count for code, count in await session.execute(statement)}


async def candidates(
    session: AsyncSession, region_code: str, exclude: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Partner codes that could take a request in `region_code`, best first (see module doc)."""
    specificity = func.max(func.length(PartnerCoverage.prefix))
    rows = await session.execute(
        select(PartnerCoverage.partner_code, specificity)
        .join(PartnerOrganisation, PartnerOrganisation.code == PartnerCoverage.partner_code)
        .where(
            PartnerOrganisation.active.is_(True),
            PartnerCoverage.prefix.in_(covering_prefixes(region_code)),
        )
        .group_by(PartnerCoverage.partner_code)
    )
    found = {code: int(length or 0) for code, length in rows if code not in exclude}
    if not found:
        return []
    staffed = set(
        await session.scalars(
            select(AccountRole.scope)
            .where(AccountRole.role == Role.PARTNER, AccountRole.scope.in_(list(found)))
            .distinct()
        )
    )
    load = await open_count_by_partner(session, list(found))
    usable = [code for code in found if code in staffed]
    return sorted(usable, key=lambda code: (-found[code], load.get(code, 0), code))


# --- notices -----------------------------------------------------------------------


async def record_notice(
    session: AsyncSession, request_id: int, telegram_id: int, message_id: int
) -> None:
    """Remember an Accept/Decline message sent to a staff member (for the partner now offered)."""
    partner_code = await session.scalar(
        select(HelpRequest.partner_code).where(HelpRequest.id == request_id)
    )
    session.add(
        HelpRequestNotice(
            request_id=request_id,
            partner_code=partner_code,
            telegram_id=telegram_id,
            message_id=message_id,
        )
    )
    await session.flush()


async def notices(
    session: AsyncSession, request_id: int, partner_code: str | None = None
) -> list[tuple[int, int]]:
    """(telegram_id, message_id) of the notices sent for a request (optionally one partner's)."""
    statement = select(HelpRequestNotice.telegram_id, HelpRequestNotice.message_id).where(
        HelpRequestNotice.request_id == request_id
    )
    if partner_code is not None:
        statement = statement.where(HelpRequestNotice.partner_code == partner_code)
    rows = await session.execute(statement.order_by(HelpRequestNotice.id))
    return [(telegram_id, message_id) for telegram_id, message_id in rows]


# --- moving on ---------------------------------------------------------------------


async def move_on(
    session: AsyncSession,
    request_id: int,
    old_partner: str,
    old_due: datetime | None,
    reason: OfferEnd,
    sla: SlaPolicy,
    now: datetime,
    by: int | None,
) -> Delivery | None:
    """End the current offer (declined/expired) and offer to the next partner or escalate.

    The transition is one conditional UPDATE guarded by the state read before; None
    when someone else moved the request first.
    """
    current = await fresh(session, request_id)
    if current is None:
        return None
    exclude = await offered_partners(session, request_id)
    exclude.add(old_partner)
    nexts = await candidates(session, current.region_code, exclude)
    guard = [
        HelpRequest.id == request_id,
        HelpRequest.status == RequestStatus.ROUTING,
        HelpRequest.partner_code == old_partner,
    ]
    guard.append(
        HelpRequest.sla_due_at == old_due
        if old_due is not None
        else HelpRequest.sla_due_at.is_(None)
    )
    if nexts:
        code = nexts[0]
        values: dict[str, Any] = {
            "partner_code": code,
            "offered_at": now,
            "sla_due_at": now + sla.for_request(current.urgent),
            "last_activity_at": now,
        }
    else:
        code = None
        values = {
            "status": RequestStatus.ESCALATED, "partner_code": None, "offered_at": None,
            "sla_due_at": None, "last_activity_at": now,
        }  # fmt: skip
    moved = await session.execute(
        update(HelpRequest)
        .where(*guard)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) != 1:
        return None
    await end_offer(session, request_id, old_partner, reason, now, by)
    withdrawn = await notices(session, request_id, old_partner)
    request = await fresh(session, request_id)
    assert request is not None
    if code is not None:
        session.add(HelpRequestOffer(request_id=request_id, partner_code=code, offered_at=now))
        await session.flush()
        await audit.record(
            session,
            "napza.offered",
            actor=by,
            subject_type="help_request",
            subject_id=request.ticket,
            partner=code,
            after=reason,
        )
        return Delivery(
            request,
            await partner(session, code),
            await staff_of(session, code),
            withdrawn_notices=withdrawn,
        )
    await audit.record(
        session,
        "napza.escalated",
        actor=by,
        subject_type="help_request",
        subject_id=request.ticket,
        after=reason,
        region=request.region_code,
    )
    return Delivery(
        request,
        None,
        [],
        admins=await admin_ids(session, request.region_code),
        requester=request.requester_telegram_id,
        withdrawn_notices=withdrawn,
    )


async def expire_due(
    session: AsyncSession, sla: SlaPolicy, now: datetime, limit: int = 100
) -> list[Delivery]:
    """Move every routing request whose SLA passed to the next partner (or escalate).

    On PostgreSQL the due rows are locked with FOR UPDATE SKIP LOCKED, so parallel
    workers take different requests; each move is also guarded by a conditional
    UPDATE on (status, partner, deadline), so no request moves twice on any database.
    """
    require_aware(now)
    statement = (
        select(HelpRequest.id, HelpRequest.partner_code, HelpRequest.sla_due_at)
        .where(HelpRequest.status == RequestStatus.ROUTING, HelpRequest.sla_due_at <= now)
        .order_by(HelpRequest.sla_due_at, HelpRequest.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    due = (await session.execute(statement)).all()
    deliveries: list[Delivery] = []
    for request_id, partner_code, due_at in due:
        if partner_code is None:
            continue
        delivery = await move_on(
            session, request_id, partner_code, due_at, OfferEnd.EXPIRED, sla, now, None
        )
        if delivery is not None:
            deliveries.append(delivery)
    return deliveries
