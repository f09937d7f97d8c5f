"""Napza (drug-abuse) help requests: creating, routing to partners, accepting,
declining, SLA expiry and escalation, the relayed chat, closing and purging.

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

Privacy. Partners never see the requester's Telegram id; a request is visible
only to the partner it is offered to or owned by (and to admins of its region),
and every view, refused view and action is audited. Audit details never hold the
note or relayed text.

Retention counts from `last_activity_at` (creation, every offer, accept, relayed
message, escalation, cancel and close). `purge` first closes open requests with no
activity for the retention period (outcome "tidak_ada_aktivitas"), then drops the
note and relay transcript of every finished request whose last activity is that old.
`erase_requester` ("Hapus data saya") cancels the requester's open requests and drops
the note, the transcript and the requester's Telegram id of all their requests at once.

No function here commits: the caller owns the transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import (
    AccountRole,
    HelpRequest,
    HelpRequestNotice,
    HelpRequestOffer,
    PartnerCoverage,
    PartnerOrganisation,
    Region,
    RelayMessage,
)
from models.enums import Role
from services import audit
from services.accounts import admins_for_region
from services.bpnt.ewarongs import nearest
from services.napza.partners import covering_prefixes

FOR_WHOM = ("self", "family")
AGE_GROUPS = ("under_18", "18_25", "26_40", "over_40")
HELP_TYPES = ("konseling", "rawat_jalan", "rawat_inap", "informasi")
NO_ACTIVITY = "tidak_ada_aktivitas"  # closed by `purge`, never chosen by a person
OUTCOMES = (
    "dirujuk", "rawat_jalan", "rawat_inap", "tidak_dapat_dihubungi", "selesai", NO_ACTIVITY,
)  # fmt: skip
# The outcomes partner staff and admins choose from when they close a case.
CHOSEN_OUTCOMES = tuple(outcome for outcome in OUTCOMES if outcome != NO_ACTIVITY)
NOTE_MAX = 500
RELAY_MAX = 2000

ROUTING = "routing"
ACCEPTED = "accepted"
ESCALATED = "escalated"
CLOSED = "closed"
CANCELLED = "cancelled"
OPEN_STATUSES = (ROUTING, ACCEPTED)  # count towards a partner's load
CANCELLABLE = (ROUTING, ACCEPTED, ESCALATED)
FINISHED = (CLOSED, CANCELLED)

SENDERS = ("requester", "partner")

TICKET_PREFIX = "NPZ-"
TICKET_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
TICKET_LENGTH = 6
TICKET_RE = re.compile(rf"^{TICKET_PREFIX}[{TICKET_ALPHABET}]{{{TICKET_LENGTH}}}$")

SEARCH_MIN = 3
NEAR_KM = 50.0
REGENCY_LEVEL = 2


# --- values ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestAnswers:
    """What the requester answered in the chat."""

    for_whom: str
    age_group: str
    help_type: str
    region_code: str  # a regency (level-2 region) code, e.g. 32.04
    urgent: bool
    note: str | None


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


# --- helpers -----------------------------------------------------------------------


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


async def _fresh(session: AsyncSession, request_id: int) -> HelpRequest | None:
    """The request as stored now (not a stale identity-map copy)."""
    return await session.get(HelpRequest, request_id, populate_existing=True)


async def _is_staff(session: AsyncSession, partner_code: str, telegram_id: int) -> bool:
    found = await session.scalar(
        select(AccountRole.id).where(
            AccountRole.role == Role.PARTNER,
            AccountRole.scope == partner_code,
            AccountRole.telegram_id == telegram_id,
        )
    )
    return found is not None


def new_ticket() -> str:
    """`NPZ-` and six characters from an alphabet without look-alikes."""
    return TICKET_PREFIX + "".join(secrets.choice(TICKET_ALPHABET) for _ in range(TICKET_LENGTH))


def normalize_ticket(text: str) -> str:
    """A typed ticket in its stored form (`npz-7f3k2q` -> `NPZ-7F3K2Q`)."""
    cleaned = storable(text).strip().upper().replace(" ", "")
    if not cleaned.startswith(TICKET_PREFIX) and len(cleaned) == TICKET_LENGTH:
        cleaned = TICKET_PREFIX + cleaned
    return cleaned


# --- regions -----------------------------------------------------------------------


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_regencies(
    session: AsyncSession, text: str, limit: int = 6
) -> list[tuple[str, str]]:
    """(code, name) of regencies/cities whose name contains every word of `text`.

    Case-insensitive; best first: an exact name, or "Kota X"/"Kabupaten X" equal to
    `text`, then shorter names, then by name. Nothing for fewer than 3 characters.
    """
    query = " ".join(storable(text).split()).lower()
    if len(query) < SEARCH_MIN or limit <= 0:
        return []
    conditions = [
        func.lower(Region.name).like(f"%{_like_escape(word)}%", escape="\\")
        for word in query.split()
    ]
    rows = (
        await session.execute(
            select(Region.code, Region.name).where(Region.level == REGENCY_LEVEL, *conditions)
        )
    ).all()
    exact = {query, f"kota {query}", f"kabupaten {query}", f"kab. {query}"}

    def rank(row: Any) -> tuple[int, int, str, str]:
        name = row.name.lower()
        return (0 if name in exact else 1, len(name), name, row.code)

    return [(row.code, row.name) for row in sorted(rows, key=rank)[:limit]]


async def regency_near(session: AsyncSession, latitude: float, longitude: float) -> str | None:
    """The regency code for a shared location, or None.

    The region data has no coordinates, so this uses the regency of the nearest
    ACTIVE e-Warong when it is within 50 km (e-Warongs carry coordinates and a
    village code); otherwise None and the requester types their regency instead.
    """
    found = await nearest(session, latitude, longitude, 1)
    if not found or found[0].distance_km > NEAR_KM:
        return None
    return ".".join(found[0].village_code.split(".")[:2])


# --- partners ----------------------------------------------------------------------


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


async def _offered_partners(session: AsyncSession, request_id: int) -> set[str]:
    result = await session.scalars(
        select(HelpRequestOffer.partner_code).where(HelpRequestOffer.request_id == request_id)
    )
    return set(result)


async def _admin_ids(session: AsyncSession, region_code: str) -> list[int]:
    return sorted(account.telegram_id for account in await admins_for_region(session, region_code))


async def _notices_of(
    session: AsyncSession, request_id: int, partner_code: str | None
) -> list[tuple[int, int]]:
    statement = select(HelpRequestNotice.telegram_id, HelpRequestNotice.message_id).where(
        HelpRequestNotice.request_id == request_id
    )
    if partner_code is not None:
        statement = statement.where(HelpRequestNotice.partner_code == partner_code)
    rows = await session.execute(statement.order_by(HelpRequestNotice.id))
    return [(telegram_id, message_id) for telegram_id, message_id in rows]


async def _end_offer(
    session: AsyncSession,
    request_id: int,
    partner_code: str | None,
    reason: str,
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


async def _move_on(
    session: AsyncSession,
    request_id: int,
    old_partner: str,
    old_due: datetime | None,
    reason: str,
    sla: SlaPolicy,
    now: datetime,
    by: int | None,
) -> Delivery | None:
    """End the current offer (declined/expired) and offer to the next partner or escalate.

    The transition is one conditional UPDATE guarded by the state read before; None
    when someone else moved the request first.
    """
    current = await _fresh(session, request_id)
    if current is None:
        return None
    exclude = await _offered_partners(session, request_id)
    exclude.add(old_partner)
    nexts = await candidates(session, current.region_code, exclude)
    guard = [
        HelpRequest.id == request_id,
        HelpRequest.status == ROUTING,
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
            "status": ESCALATED, "partner_code": None, "offered_at": None, "sla_due_at": None,
            "last_activity_at": now,
        }  # fmt: skip
    moved = await session.execute(
        update(HelpRequest)
        .where(*guard)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(moved) != 1:
        return None
    await _end_offer(session, request_id, old_partner, reason, now, by)
    withdrawn = await _notices_of(session, request_id, old_partner)
    request = await _fresh(session, request_id)
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
        admins=await _admin_ids(session, request.region_code),
        requester=request.requester_telegram_id,
        withdrawn_notices=withdrawn,
    )


# --- creating ----------------------------------------------------------------------


async def validate_answers(session: AsyncSession, answers: RequestAnswers) -> None:
    """Raise ValueError when an answer is not one of the allowed values."""
    if answers.for_whom not in FOR_WHOM:
        raise ValueError("for_whom must be one of " + ", ".join(FOR_WHOM))
    if answers.age_group not in AGE_GROUPS:
        raise ValueError("age_group must be one of " + ", ".join(AGE_GROUPS))
    if answers.help_type not in HELP_TYPES:
        raise ValueError("help_type must be one of " + ", ".join(HELP_TYPES))
    if not isinstance(answers.urgent, bool):
        raise ValueError("urgent must be a bool")
    if answers.note is not None and len(answers.note) > NOTE_MAX:
        raise ValueError(f"note must be at most {NOTE_MAX} characters")
    level = await session.scalar(select(Region.level).where(Region.code == answers.region_code))
    if level != REGENCY_LEVEL:
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
    """Store a consented request and offer it to the best partner (or escalate at once)."""
    _require_aware(now)
    await validate_answers(session, answers)
    note = storable(answers.note or "").strip() or None
    request = HelpRequest(
        ticket=await _unused_ticket(session),
        requester_telegram_id=requester_telegram_id,
        for_whom=answers.for_whom,
        age_group=answers.age_group,
        help_type=answers.help_type,
        region_code=answers.region_code,
        urgent=answers.urgent,
        note=note,
        consent_at=now,
        status=ROUTING,
        created_at=now,
        last_activity_at=now,
    )
    nexts = await candidates(session, answers.region_code)
    if nexts:
        request.partner_code = nexts[0]
        request.offered_at = now
        request.sla_due_at = now + sla.for_request(answers.urgent)
    else:
        request.status = ESCALATED
    session.add(request)
    await session.flush()
    await audit.record(
        session,
        "napza.created",
        actor=requester_telegram_id,
        subject_type="help_request",
        subject_id=request.ticket,
        region=answers.region_code,
        help_type=answers.help_type,
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
        return Delivery(request, None, [], admins=await _admin_ids(session, answers.region_code))
    session.add(
        HelpRequestOffer(request_id=request.id, partner_code=request.partner_code, offered_at=now)
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
    return Delivery(
        request,
        await partner(session, request.partner_code),
        await staff_of(session, request.partner_code),
    )


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
    return await _notices_of(session, request_id, partner_code)


# --- partner actions ---------------------------------------------------------------


async def accept(
    session: AsyncSession, request_id: int, partner_code: str, staff_id: int, now: datetime
) -> AcceptOutcome:
    """Take a request offered to the staff member's partner: exactly one staff member wins.

    A replayed Accept by the winner gets TAKEN (with its own partner's name).
    """
    _require_aware(now)
    if not await _is_staff(session, partner_code, staff_id):
        await _refused(session, "napza.accept_refused", request_id, partner_code, staff_id)
        return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)
    won = await session.execute(
        update(HelpRequest)
        .where(
            HelpRequest.id == request_id,
            HelpRequest.status == ROUTING,
            HelpRequest.partner_code == partner_code,
        )
        .values(
            status=ACCEPTED,
            accepted_by=staff_id,
            accepted_at=now,
            sla_due_at=None,
            last_activity_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    request = await _fresh(session, request_id)
    if _rowcount(won) == 1 and request is not None:
        await _end_offer(session, request_id, partner_code, "accepted", now, staff_id)
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
    await _refused(session, "napza.accept_refused", request_id, partner_code, staff_id)
    if request is None:
        return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)
    offered = partner_code in await _offered_partners(session, request_id)
    if request.partner_code == partner_code and request.accepted_by is not None:
        if request.status == ACCEPTED:
            org = await partner(session, partner_code)
            return AcceptOutcome(AcceptResult.TAKEN, request, org, org.name if org else None)
        return AcceptOutcome(AcceptResult.CLOSED, request)
    if offered and request.status == CANCELLED:
        return AcceptOutcome(AcceptResult.CLOSED, request)
    return AcceptOutcome(AcceptResult.NOT_OFFERED_TO_YOU)


async def _refused(
    session: AsyncSession, action: str, request_id: int, partner_code: str, actor: int
) -> None:
    await audit.record(
        session,
        action,
        actor=actor,
        subject_type="help_request_id",
        subject_id=request_id,
        partner=partner_code,
    )


async def decline(
    session: AsyncSession,
    request_id: int,
    partner_code: str,
    staff_id: int,
    sla: SlaPolicy,
    now: datetime,
) -> Delivery | None:
    """Decline an offer to the staff member's partner; the Delivery for the next step or None."""
    _require_aware(now)
    if not await _is_staff(session, partner_code, staff_id):
        await _refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
        return None
    current = await _fresh(session, request_id)
    if current is None or current.status != ROUTING or current.partner_code != partner_code:
        await _refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
        return None
    delivery = await _move_on(
        session, request_id, partner_code, current.sla_due_at, "declined", sla, now, staff_id
    )
    if delivery is None:
        await _refused(session, "napza.decline_refused", request_id, partner_code, staff_id)
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


async def expire_due(
    session: AsyncSession, sla: SlaPolicy, now: datetime, limit: int = 100
) -> list[Delivery]:
    """Move every routing request whose SLA passed to the next partner (or escalate).

    On PostgreSQL the due rows are locked with FOR UPDATE SKIP LOCKED, so parallel
    workers take different requests; each move is also guarded by a conditional
    UPDATE on (status, partner, deadline), so no request moves twice on any database.
    """
    _require_aware(now)
    statement = (
        select(HelpRequest.id, HelpRequest.partner_code, HelpRequest.sla_due_at)
        .where(HelpRequest.status == ROUTING, HelpRequest.sla_due_at <= now)
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
        delivery = await _move_on(
            session, request_id, partner_code, due_at, "expired", sla, now, None
        )
        if delivery is not None:
            deliveries.append(delivery)
    return deliveries


async def request_for_partner(
    session: AsyncSession, request_id: int, partner_code: str, viewer: int, now: datetime
) -> HelpRequest | None:
    """The request when offered to or owned by the viewer's partner (audited); else None."""
    _require_aware(now)
    request = await _fresh(session, request_id)
    visible = (
        request is not None
        and request.partner_code == partner_code
        and request.status in (ROUTING, ACCEPTED, CLOSED)
        and await _is_staff(session, partner_code, viewer)
    )
    if not visible or request is None:
        await _refused(session, "napza.view_refused", request_id, partner_code, viewer)
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


async def request_for_admin(
    session: AsyncSession, request_id: int, admin_id: int, now: datetime
) -> HelpRequest | None:
    """The request when `admin_id` is an admin whose scope covers its region (audited)."""
    _require_aware(now)
    request = await _fresh(session, request_id)
    allowed = request is not None and admin_id in await _admin_ids(session, request.region_code)
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


async def close(
    session: AsyncSession,
    request_id: int,
    partner_code: str,
    staff_id: int,
    outcome: str,
    now: datetime,
) -> HelpRequest | None:
    """Close an accepted request with an outcome; only the owning partner's staff can."""
    _require_aware(now)
    if outcome not in OUTCOMES:
        raise ValueError("outcome must be one of " + ", ".join(OUTCOMES))
    closed = None
    if await _is_staff(session, partner_code, staff_id):
        closed = await session.execute(
            update(HelpRequest)
            .where(
                HelpRequest.id == request_id,
                HelpRequest.status == ACCEPTED,
                HelpRequest.partner_code == partner_code,
            )
            .values(status=CLOSED, outcome=outcome, closed_at=now, last_activity_at=now)
            .execution_options(synchronize_session=False)
        )
    if closed is None or _rowcount(closed) != 1:
        await _refused(session, "napza.close_refused", request_id, partner_code, staff_id)
        return None
    request = await _fresh(session, request_id)
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


async def close_escalated(
    session: AsyncSession, request_id: int, admin_id: int, outcome: str, now: datetime
) -> HelpRequest | None:
    """An admin of the request's region closes an escalated request with an outcome.

    This is the way out of "escalated": the admin arranged help (or could not), and the
    request then follows the same retention as any closed one.
    """
    _require_aware(now)
    if outcome not in OUTCOMES:
        raise ValueError("outcome must be one of " + ", ".join(OUTCOMES))
    request = await get_request(session, request_id)
    if request is None or admin_id not in await _admin_ids(session, request.region_code):
        await audit.record(
            session, "napza.admin_close_refused", actor=admin_id,
            subject_type="help_request", subject_id=request_id,
        )  # fmt: skip
        return None
    closed = await session.execute(
        update(HelpRequest)
        .where(HelpRequest.id == request_id, HelpRequest.status == ESCALATED)
        .values(status=CLOSED, outcome=outcome, closed_at=now, last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(closed) != 1:
        return None
    request = await _fresh(session, request_id)
    assert request is not None
    await audit.record(
        session, "napza.closed_by_admin", actor=admin_id, subject_type="help_request",
        subject_id=request.ticket, outcome=outcome,
    )  # fmt: skip
    return request


# --- requester actions -------------------------------------------------------------


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


async def active_request_of(
    session: AsyncSession, requester_telegram_id: int
) -> HelpRequest | None:
    """The requester's most recent accepted request (the one a relayed chat goes to), or None."""
    return await session.scalar(
        select(HelpRequest)
        .where(
            HelpRequest.requester_telegram_id == requester_telegram_id,
            HelpRequest.status == ACCEPTED,
        )
        .order_by(HelpRequest.accepted_at.desc(), HelpRequest.id.desc())
        .limit(1)
    )


async def cancel(
    session: AsyncSession, ticket: str, requester_telegram_id: int, now: datetime
) -> HelpRequest | None:
    """Cancel the requester's own open request; the request (partner_code/accepted_by kept,
    so the handler can tell the staff), or None when it is not theirs or already finished."""
    _require_aware(now)
    ticket = normalize_ticket(ticket)
    done = await session.execute(
        update(HelpRequest)
        .where(
            HelpRequest.ticket == ticket,
            HelpRequest.requester_telegram_id == requester_telegram_id,
            HelpRequest.status.in_(CANCELLABLE),
        )
        .values(status=CANCELLED, closed_at=now, sla_due_at=None, last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(done) != 1:
        return None
    request = await request_for_requester(session, ticket, requester_telegram_id)
    assert request is not None
    await session.refresh(request)
    await _end_offer(session, request.id, None, "cancelled", now, requester_telegram_id)
    await audit.record(
        session,
        "napza.cancelled",
        actor=requester_telegram_id,
        subject_type="help_request",
        subject_id=request.ticket,
    )
    return request


# --- relayed chat ------------------------------------------------------------------


async def add_relay(
    session: AsyncSession,
    request_id: int,
    sender: str,
    text: str,
    now: datetime,
    staff_id: int | None = None,
) -> int | None:
    """Store a relayed message; the counterpart's Telegram id, or None unless accepted.

    Partner messages go to the requester, requester messages to the staff member who
    accepted. Raises ValueError for an unknown sender or a text that is empty or
    longer than 2000 characters (handlers check first). Audited without the text.
    """
    _require_aware(now)
    if sender not in SENDERS:
        raise ValueError("sender must be one of " + ", ".join(SENDERS))
    text = storable(text)
    if not text or len(text) > RELAY_MAX:
        raise ValueError(f"text must be 1-{RELAY_MAX} characters")
    request = await _fresh(session, request_id)
    if request is None or request.status != ACCEPTED or request.partner_code is None:
        return None
    if request.requester_telegram_id is None:  # erased: nobody to talk to any more
        return None
    # Only current staff of the owning partner may write, and only to a staff member
    # who is still there: a removed member neither sends nor receives.
    if sender == "partner" and (
        staff_id is None or not await _is_staff(session, request.partner_code, staff_id)
    ):
        return None
    if request.accepted_by is None or not await _is_staff(
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
    return request.requester_telegram_id if sender == "partner" else request.accepted_by


async def get_request(session: AsyncSession, request_id: int) -> HelpRequest | None:
    """The request by id (for notifications; callers decide who may see what)."""
    if not 0 < request_id < 2**63:
        return None
    return await session.get(HelpRequest, request_id)


async def current_partner(session: AsyncSession, request_id: int) -> str | None:
    """The code of the partner the request is offered to or owned by, if any."""
    request = await get_request(session, request_id)
    return request.partner_code if request else None


async def relay_transcript(session: AsyncSession, request_id: int) -> list[RelayMessage]:
    """The relayed messages of a request, oldest first (empty once purged)."""
    result = await session.scalars(
        select(RelayMessage)
        .where(RelayMessage.request_id == request_id)
        .order_by(RelayMessage.created_at, RelayMessage.id)
    )
    return list(result)


# --- retention and erasure ---------------------------------------------------------

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
    _require_aware(now)
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
            .values(status=CLOSED, outcome=NO_ACTIVITY, closed_at=now, sla_due_at=None)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(done) != 1:
            continue
        closed += 1
        await _end_offer(session, request_id, None, "expired", now)  # its SLA is long past
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
    _require_aware(now)
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
    _require_aware(now)
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
                HelpRequestOffer.end_reason == "cancelled",
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
    fresh = [await _fresh(session, request_id) for request_id in cancelled_ids]
    return [request for request in fresh if request is not None]


__all__ = [
    "AGE_GROUPS",
    "CHOSEN_OUTCOMES",
    "FOR_WHOM",
    "HELP_TYPES",
    "NOTE_MAX",
    "NO_ACTIVITY",
    "OUTCOMES",
    "AcceptOutcome",
    "AcceptResult",
    "Delivery",
    "RequestAnswers",
    "SlaPolicy",
    "accept",
    "active_request_of",
    "add_relay",
    "cancel",
    "close",
    "close_inactive",
    "create_request",
    "decline",
    "erase_requester",
    "expire_due",
    "notices",
    "open_count_by_partner",
    "partner",
    "purge",
    "record_notice",
    "regency_near",
    "request_for_admin",
    "request_for_partner",
    "request_for_requester",
    "requests_of",
    "search_regencies",
    "staff_of",
]
