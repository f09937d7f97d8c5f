"""Creating a Napza help request from the questionnaire's answers.

`create_request` is the one Napza function that commits: the request must exist
before any partner can press Accept on the offer the caller then sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import HelpRequest, HelpRequestOffer
from models.enums import AgeGroup, ForWhom, HelpType, RequestStatus
from services import audit
from services.napza.common import admin_ids, new_ticket, partner, require_aware, staff_of
from services.napza.regions import is_regency
from services.napza.routing import Delivery, SlaPolicy, candidates

NOTE_MAX = 500


@dataclass(frozen=True)
class RequestAnswers:
    """What the requester answered in the chat."""

    for_whom: ForWhom | str
    age_group: AgeGroup | str
    help_type: HelpType | str
    region_code: str  # a regency (level-2 region) code, e.g. 32.04
    urgent: bool
    note: str | None


def _one_of(name: str, value: object, vocabulary: type[ForWhom | AgeGroup | HelpType]) -> None:
    allowed = [member.value for member in vocabulary]
    if value not in allowed:
        raise ValueError(f"{name} must be one of " + ", ".join(allowed))


async def validate_answers(session: AsyncSession, answers: RequestAnswers) -> None:
    """Raise ValueError when an answer is not one of the allowed values."""
    _one_of("for_whom", answers.for_whom, ForWhom)
    _one_of("age_group", answers.age_group, AgeGroup)
    _one_of("help_type", answers.help_type, HelpType)
    if not isinstance(answers.urgent, bool):
        raise ValueError("urgent must be a bool")
    if answers.note is not None and len(answers.note) > NOTE_MAX:
        raise ValueError(f"note must be at most {NOTE_MAX} characters")
    if not await is_regency(session, answers.region_code):
        raise ValueError("region_code must be a regency (kabupaten/kota) code")


async def _unused_ticket(session: AsyncSession) -> str:
    while True:
        ticket = new_ticket()
        taken = await session.scalar(select(HelpRequest.id).where(HelpRequest.ticket == ticket))
        if taken is None:
            return ticket


async def create_request(
    session: AsyncSession,
    requester_telegram_id: int,
    answers: RequestAnswers,
    sla: SlaPolicy,
    now: datetime,
) -> Delivery:
    """Store a consented request, offer it to the best partner (or escalate at once) and
    COMMIT: the request exists before any partner can press Terima (Accept).

    Returns the Delivery for the caller to send (`partner` None: escalated, no partner
    covers the region). Raises ValueError, before writing anything, for an invalid answer.
    """
    require_aware(now)
    await validate_answers(session, answers)
    note = storable(answers.note or "").strip() or None
    request = HelpRequest(
        ticket=await _unused_ticket(session),
        requester_telegram_id=requester_telegram_id,
        for_whom=ForWhom(answers.for_whom),
        age_group=AgeGroup(answers.age_group),
        help_type=HelpType(answers.help_type),
        region_code=answers.region_code,
        urgent=answers.urgent,
        note=note,
        consent_at=now,
        status=RequestStatus.ROUTING,
        created_at=now,
        last_activity_at=now,
    )
    nexts = await candidates(session, answers.region_code)
    if nexts:
        request.partner_code = nexts[0]
        request.offered_at = now
        request.sla_due_at = now + sla.for_request(answers.urgent)
    else:
        request.status = RequestStatus.ESCALATED
    session.add(request)
    await session.flush()
    await audit.record(
        session,
        "napza.created",
        actor=requester_telegram_id,
        subject_type="help_request",
        subject_id=request.ticket,
        region=answers.region_code,
        help_type=request.help_type,
        urgent=answers.urgent,
        has_note=note is not None,
    )
    if request.partner_code is None:
        await audit.record(
            session,
            "napza.escalated",
            subject_type="help_request",
            subject_id=request.ticket,
            after="no_partner",
            region=answers.region_code,
        )
        delivery = Delivery(request, None, [], admins=await admin_ids(session, answers.region_code))
    else:
        session.add(
            HelpRequestOffer(
                request_id=request.id, partner_code=request.partner_code, offered_at=now
            )
        )
        await session.flush()
        await audit.record(
            session,
            "napza.offered",
            subject_type="help_request",
            subject_id=request.ticket,
            partner=request.partner_code,
            after="created",
        )
        delivery = Delivery(
            request,
            await partner(session, request.partner_code),
            await staff_of(session, request.partner_code),
        )
    await session.commit()  # the request exists before any partner can press Terima
    return delivery
