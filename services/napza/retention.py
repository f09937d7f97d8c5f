"""How long Napza requests keep what was said, and erasing a requester.

Retention counts from `last_activity_at` (creation, every offer, accept, relayed
message, escalation, cancel and close). `purge` first closes open requests with no
activity for the retention period (outcome "tidak_ada_aktivitas"), then drops the
note and relay transcript of every finished request whose last activity is that old.
`erase_requester` ("Hapus data saya") cancels the requester's open requests and drops
the note, the transcript and the requester's Telegram id of all their requests at once.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import HelpRequest, HelpRequestOffer, RelayMessage
from models.enums import OfferEnd, RequestOutcome, RequestStatus
from services import audit
from services.napza.actions import CANCELLABLE, cancel
from services.napza.common import end_offer, fresh, require_aware, rowcount

FINISHED = (RequestStatus.CLOSED, RequestStatus.CANCELLED)
CHUNK = 1000


async def _forget_content(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    """Delete the relay transcript and the note of these requests; mark them purged."""
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        await session.execute(
            delete(RelayMessage)
            .where(RelayMessage.request_id.in_(chunk))
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(HelpRequest)
            .where(HelpRequest.id.in_(chunk))
            .values(note=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(HelpRequest)
            .where(HelpRequest.id.in_(chunk), HelpRequest.purged_at.is_(None))
            .values(purged_at=now)
            .execution_options(synchronize_session=False)
        )


async def close_inactive(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Close every open request (routing, accepted, escalated) with no activity since
    now - retention, with the outcome "tidak_ada_aktivitas"; returns how many.

    Its `last_activity_at` is left as it was, so `purge` drops its note in the same pass.
    Each close is a conditional UPDATE (still open, still idle), so a request that moved
    meanwhile is left alone; each is audited.
    """
    require_aware(now)
    cutoff = now - retention
    stale = (
        await session.execute(
            select(HelpRequest.id, HelpRequest.ticket, HelpRequest.last_activity_at)
            .where(HelpRequest.status.in_(CANCELLABLE), HelpRequest.last_activity_at <= cutoff)
            .order_by(HelpRequest.last_activity_at, HelpRequest.id)
        )
    ).all()
    closed = 0
    for request_id, ticket, last_activity_at in stale:
        done = await session.execute(
            update(HelpRequest)
            .where(
                HelpRequest.id == request_id,
                HelpRequest.status.in_(CANCELLABLE),
                HelpRequest.last_activity_at <= cutoff,
            )
            .values(
                status=RequestStatus.CLOSED,
                outcome=RequestOutcome.TIDAK_ADA_AKTIVITAS,
                closed_at=now,
                sla_due_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(done) != 1:
            continue
        closed += 1
        await end_offer(session, request_id, None, OfferEnd.EXPIRED, now)  # its SLA is long past
        await audit.record(
            session,
            "napza.closed_no_activity",
            subject_type="help_request",
            subject_id=ticket,
            idle_days=(now - last_activity_at).days,
        )
    return closed


async def purge(session: AsyncSession, now: datetime, retention: timedelta) -> int:
    """Apply retention: close idle open requests (`close_inactive`), then drop the note and
    relay transcript of finished requests with no activity since now - retention.

    Returns how many requests were purged; one `napza.purged` audit event when any.
    Cheap to run often: it reads through the (status, last_activity_at) index.
    """
    require_aware(now)
    cutoff = now - retention
    await close_inactive(session, now, retention)
    ids = list(
        await session.scalars(
            select(HelpRequest.id).where(
                HelpRequest.status.in_(FINISHED),
                HelpRequest.last_activity_at <= cutoff,
                HelpRequest.purged_at.is_(None),
            )
        )
    )
    if not ids:
        return 0
    await _forget_content(session, ids, now)
    await audit.record(
        session,
        "napza.purged",
        subject_type="help_requests",
        count=len(ids),
        retention_days=retention.days,
    )
    return len(ids)


async def erase_requester(
    session: AsyncSession, requester_telegram_id: int, now: datetime
) -> list[HelpRequest]:
    """Erase a requester from Napza ("Hapus data saya").

    Cancel their open requests (as `cancel` does), then drop the note, the relay
    transcript and the requester's Telegram id of ALL their requests. Returns the
    requests it cancelled, as stored now (no note, no requester), for the caller to
    tell the partner staff or admins involved.

    What is left of a request is what the partner and the statistics already had: the
    ticket, help type, age group, region, urgency, status and outcome. One
    `napza.requester_erased` audit event with counts only, when there was anything.
    """
    require_aware(now)
    open_tickets = list(
        await session.scalars(
            select(HelpRequest.ticket)
            .where(
                HelpRequest.requester_telegram_id == requester_telegram_id,
                HelpRequest.status.in_(CANCELLABLE),
            )
            .order_by(HelpRequest.id)
        )
    )
    cancelled_ids = []
    for ticket in open_tickets:
        request = await cancel(session, ticket, requester_telegram_id, now)
        if request is not None:
            cancelled_ids.append(request.id)
    ids = list(
        await session.scalars(
            select(HelpRequest.id).where(HelpRequest.requester_telegram_id == requester_telegram_id)
        )
    )
    if not ids:
        return []
    await _forget_content(session, ids, now)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        # The offers a cancel ended name the requester as who ended them.
        await session.execute(
            update(HelpRequestOffer)
            .where(
                HelpRequestOffer.request_id.in_(chunk),
                HelpRequestOffer.ended_by == requester_telegram_id,
                HelpRequestOffer.end_reason == OfferEnd.CANCELLED,
            )
            .values(ended_by=None)
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            update(HelpRequest)
            .where(HelpRequest.id.in_(chunk))
            .values(requester_telegram_id=None)
            .execution_options(synchronize_session=False)
        )
    await audit.record(
        session,
        "napza.requester_erased",
        subject_type="help_requests",
        count=len(ids),
        cancelled=len(cancelled_ids),
    )
    fresh_requests = [await fresh(session, request_id) for request_id in cancelled_ids]
    return [request for request in fresh_requests if request is not None]
