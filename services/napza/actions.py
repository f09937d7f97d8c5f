"""What people do with a Napza help request: partner staff accept, decline, view and
close it, an admin closes an escalated one, the requester lists and cancels theirs.

Privacy. Partners never see the requester's Telegram id; a request is visible
only to the partner it is offered to or owned by (and to admins of its region),
and every view, refused view and action is audited. Audit details never hold the
note or relayed text.

Each state change is one conditional UPDATE (see `services.napza.routing`), so a
race between two presses, or a press and the SLA worker, moves a request once.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import HelpRequest, PartnerOrganisation
from models.enums import OfferEnd, RequestOutcome, RequestStatus, Role
from services import audit
from services.napza.common import (
    admin_ids,
    end_offer,
    fresh,
    get_request,
    is_staff,
    normalize_ticket,
    offered_partners,
    partner,
    refused,
    require_aware,
    rowcount,
)
from services.napza.routing import Delivery, SlaPolicy, move_on

CANCELLABLE = (RequestStatus.ROUTING, RequestStatus.ACCEPTED, RequestStatus.ESCALATED)


class AcceptResult(StrEnum):
    ACCEPTED = "accepted"
    TAKEN = "taken"  # another staff member of the same partner was first (or a replay)
    NOT_OFFERED_TO_YOU = "not_offered_to_you"
    CLOSED = "closed"  # cancelled by the requester or closed


@dataclass(frozen=True)
class AcceptOutcome:
    result: AcceptResult
    request: HelpRequest | None = None
    partner: PartnerOrganisation | None = None
    taken_by_partner_name: str | None = None


def _outcome(outcome: RequestOutcome | str) -> RequestOutcome:
    try:
        return RequestOutcome(outcome)
    except ValueError:
        raise ValueError(
            "outcome must be one of " + ", ".join(member.value for member in RequestOutcome)
        ) from None


# --- partner staff -----------------------------------------------------------------


async def accept(
    session: AsyncSession, request_id: int, partner_code: str, staff_id: int, now: datetime
) -> AcceptOutcome:
    """Take a request offered to the staff member's partner: exactly one staff member wins.

    A replayed Accept by the winner gets TAKEN (with its own partner's name).
    """
    require_aware(now)
    if not await is_staff(session, partner_code, staff_id):
        await refused(session, "napza.accept_refused", request_id, partner_code, staff_id)
        return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)
    won = await session.execute(
        update(HelpRequest)
        .where(
            HelpRequest.id == request_id,
            HelpRequest.status == RequestStatus.ROUTING,
            HelpRequest.partner_code == partner_code,
        )
        .values(
            status=RequestStatus.ACCEPTED,
            accepted_by=staff_id,
            accepted_at=now,
            sla_due_at=None,
            last_activity_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    request = await fresh(session, request_id)
    if rowcount(won) == 1 and request is not None:
        await end_offer(session, request_id, partner_code, OfferEnd.ACCEPTED, now, staff_id)
        await audit.record(
            session,
            "napza.accepted",
            actor=staff_id,
            subject_type="help_request",
            subject_id=request.ticket,
            partner=partner_code,
        )
        org = await partner(session, partner_code)
        return AcceptOutcome(AcceptResult.ACCEPTED, request, org, org.name if org else None)
    await refused(session, "napza.accept_refused", request_id, partner_code, staff_id)
    if request is None:
        return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)
    offered = partner_code in await offered_partners(session, request_id)
    if request.partner_code == partner_code and request.accepted_by is not None:
        if request.status == RequestStatus.ACCEPTED:
            org = await partner(session, partner_code)
            return AcceptOutcome(AcceptResult.TAKEN, request, org, org.name if org else None)
        return AcceptOutcome(AcceptResult.CLOSED, request)
    if offered and request.status == RequestStatus.CANCELLED:
        return AcceptOutcome(AcceptResult.CLOSED, request)
    return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)


async def decline(
    session: AsyncSession,
    request_id: int,
    partner_code: str,
    staff_id: int,
    sla: SlaPolicy,
    now: datetime,
) -> Delivery | None:
    """Decline an offer to the staff member's partner; the Delivery for the next step or None."""
    require_aware(now)
    if not await is_staff(session, partner_code, staff_id):
        await refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
        return None
    current = await fresh(session, request_id)
    if (
        current is None
        or current.status != RequestStatus.ROUTING
        or current.partner_code != partner_code
    ):
        await refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
        return None
    delivery = await move_on(
        session,
        request_id,
        partner_code,
        current.sla_due_at,
        OfferEnd.DECLINED,
        sla,
        now,
        staff_id,
    )
    if delivery is None:
        await refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
        return None
    await audit.record(
        session,
        "napza.declined",
        actor=staff_id,
        subject_type="help_request",
        subject_id=delivery.request.ticket,
        partner=partner_code,
    )
    return delivery


async def request_for_partner(
    session: AsyncSession, request_id: int, partner_code: str, viewer: int, now: datetime
) -> HelpRequest | None:
    """The request when offered to or owned by the viewer's partner (audited); else None."""
    require_aware(now)
    request = await fresh(session, request_id)
    visible = (
        request is not None
        and request.partner_code == partner_code
        and request.status in (RequestStatus.ROUTING, RequestStatus.ACCEPTED, RequestStatus.CLOSED)
        and await is_staff(session, partner_code, viewer)
    )
    if not visible or request is None:
        await refused(session, "napza.view_refused", request_id, partner_code, viewer)
        return None
    await audit.record(
        session,
        "napza.viewed",
        actor=viewer,
        subject_type="help_request",
        subject_id=request.ticket,
        partner=partner_code,
    )
    return request


async def close(
    session: AsyncSession,
    request_id: int,
    partner_code: str,
    staff_id: int,
    outcome: RequestOutcome | str,
    now: datetime,
) -> HelpRequest | None:
    """Close an accepted request with an outcome; only the owning partner's staff can."""
    require_aware(now)
    outcome = _outcome(outcome)
    closed = None
    if await is_staff(session, partner_code, staff_id):
        closed = await session.execute(
            update(HelpRequest)
            .where(
                HelpRequest.id == request_id,
                HelpRequest.status == RequestStatus.ACCEPTED,
                HelpRequest.partner_code == partner_code,
            )
            .values(
                status=RequestStatus.CLOSED, outcome=outcome, closed_at=now, last_activity_at=now
            )
            .execution_options(synchronize_session=False)
        )
    if closed is None or rowcount(closed) != 1:
        await refused(session, "napza.close_refused", request_id, partner_code, staff_id)
        return None
    request = await fresh(session, request_id)
    assert request is not None
    await audit.record(
        session,
        "napza.closed",
        actor=staff_id,
        subject_type="help_request",
        subject_id=request.ticket,
        partner=partner_code,
        outcome=outcome,
    )
    return request


# --- admins ------------------------------------------------------------------------


async def request_for_admin(
    session: AsyncSession, request_id: int, admin_id: int, now: datetime
) -> HelpRequest | None:
    """The request when `admin_id` is an admin whose scope covers its region (audited)."""
    require_aware(now)
    request = await fresh(session, request_id)
    allowed = request is not None and admin_id in await admin_ids(session, request.region_code)
    if not allowed or request is None:
        await audit.record(
            session,
            "napza.view_refused",
            actor=admin_id,
            subject_type="help_request_id",
            subject_id=request_id,
            as_role=Role.ADMIN,
        )
        return None
    await audit.record(
        session,
        "napza.viewed",
        actor=admin_id,
        subject_type="help_request",
        subject_id=request.ticket,
        as_role=Role.ADMIN,
    )
    return request


async def close_escalated(
    session: AsyncSession,
    request_id: int,
    admin_id: int,
    outcome: RequestOutcome | str,
    now: datetime,
) -> HelpRequest | None:
    """An admin of the request's region closes an escalated request with an outcome.

    This is the way out of "escalated": the admin arranged help (or could not), and the
    request then follows the same retention as any closed one.
    """
    require_aware(now)
    outcome = _outcome(outcome)
    request = await get_request(session, request_id)
    if request is None or admin_id not in await admin_ids(session, request.region_code):
        await audit.record(
            session, "napza.admin_close_refused", actor=admin_id,
            subject_type="help_request", subject_id=request_id,
        )  # fmt: skip
        return None
    closed = await session.execute(
        update(HelpRequest)
        .where(HelpRequest.id == request_id, HelpRequest.status == RequestStatus.ESCALATED)
        .values(status=RequestStatus.CLOSED, outcome=outcome, closed_at=now, last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(closed) != 1:
        return None
    request = await fresh(session, request_id)
    assert request is not None
    await audit.record(
        session, "napza.closed_by_admin", actor=admin_id, subject_type="help_request",
        subject_id=request.ticket, outcome=outcome,
    )  # fmt: skip
    return request


# --- the requester -----------------------------------------------------------------


async def request_for_requester(
    session: AsyncSession, ticket: str, requester_telegram_id: int
) -> HelpRequest | None:
    """The requester's own request with this ticket, or None (also for others' tickets)."""
    return await session.scalar(
        select(HelpRequest).where(
            HelpRequest.ticket == normalize_ticket(ticket),
            HelpRequest.requester_telegram_id == requester_telegram_id,
        )
    )


async def requests_of(
    session: AsyncSession, requester_telegram_id: int, limit: int = 5
) -> list[HelpRequest]:
    """The requester's most recent requests, newest first."""
    result = await session.scalars(
        select(HelpRequest)
        .where(HelpRequest.requester_telegram_id == requester_telegram_id)
        .order_by(HelpRequest.created_at.desc(), HelpRequest.id.desc())
        .limit(limit)
    )
    return list(result)


async def cancel(
    session: AsyncSession, ticket: str, requester_telegram_id: int, now: datetime
) -> HelpRequest | None:
    """Cancel the requester's own open request; the request (partner_code/accepted_by kept,
    so the handler can tell the staff), or None when it is not theirs or already finished."""
    require_aware(now)
    ticket = normalize_ticket(ticket)
    done = await session.execute(
        update(HelpRequest)
        .where(
            HelpRequest.ticket == ticket,
            HelpRequest.requester_telegram_id == requester_telegram_id,
            HelpRequest.status.in_(CANCELLABLE),
        )
        .values(
            status=RequestStatus.CANCELLED, closed_at=now, sla_due_at=None, last_activity_at=now
        )
        .execution_options(synchronize_session=False)
    )
    if rowcount(done) != 1:
        return None
    request = await request_for_requester(session, ticket, requester_telegram_id)
    assert request is not None
    await session.refresh(request)
    await end_offer(session, request.id, None, OfferEnd.CANCELLED, now, requester_telegram_id)
    await audit.record(
        session,
        "napza.cancelled",
        actor=requester_telegram_id,
        subject_type="help_request",
        subject_id=request.ticket,
    )
    return request
