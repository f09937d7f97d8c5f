"""Broadcasts: who an announcement reaches, its life cycle, and the delivery bookkeeping.

An admin's audience is a programme group (all KPM, PKH, BPNT, agents, partners), a
region prefix inside the admin's scope and optionally one language. Recipients are
never loaded all at once: when a broadcast starts, its recipients are cut into
chunks of consecutive Telegram ids by keyset pagination (`plan`), and workers take
chunks under a lease (`claim_chunk`) and walk them in pages (`next_page`).

Exactly once: each delivery moves the chunk's cursor past the recipient in its own
statement (`record_delivery`) while the worker still holds the lease. A worker that
dies leaves its chunk to be taken over when the lease runs out, from the cursor; only
messages sent but not yet recorded at the moment of death can go out twice.

Counters live on the chunks (no hot row shared by all workers); `progress` sums them.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    TextClause,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from models import (
    Account,
    AccountRole,
    Beneficiary,
    Broadcast,
    BroadcastChunk,
    BroadcastFailure,
    BroadcastVersion,
    EWarong,
    PartnerCoverage,
)
from models.base import UtcDateTime
from models.enums import ACTIVE_BROADCASTS, BroadcastStatus, Role
from models.enums import Audience as Group
from services import audit
from services.accounts import SUPPORTED_LOCALES
from services.regions import in_scope

AUDIENCES = tuple(Group)
ERROR_TEXT_LIMIT = 200


class Outcome(enum.Enum):
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Audience:
    """Who a broadcast goes to. `region_prefix` "" means the whole country."""

    group: str
    region_prefix: str = ""
    language: str | None = None

    def __post_init__(self) -> None:
        if self.group not in AUDIENCES:
            raise ValueError(f"unknown audience {self.group!r}")
        if self.language is not None and self.language not in SUPPORTED_LOCALES:
            raise ValueError(f"unsupported language {self.language!r}")

    @classmethod
    def of(cls, broadcast: Broadcast) -> Audience:
        return cls(broadcast.audience, broadcast.region_prefix, broadcast.language)


@dataclass(frozen=True)
class Recipient:
    telegram_id: int
    locale: str


@dataclass(frozen=True)
class Progress:
    broadcast_id: int
    status: str
    recipients: int
    sent: int
    failed: int
    blocked: int
    started_at: datetime | None
    finished_at: datetime | None
    scheduled_at: datetime

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.blocked

    def rate(self, now: datetime) -> float:
        """Deliveries handled per second since the start."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or now
        seconds = (end - self.started_at).total_seconds()
        return self.handled / seconds if seconds > 0 else 0.0

    def seconds_left(self, now: datetime) -> float | None:
        """Time left at the current rate; None before there is a rate."""
        rate = self.rate(now)
        if rate <= 0:
            return None
        return max(self.recipients - self.handled, 0) / rate


def effective_locale() -> ColumnElement[str]:
    """SQL for `accounts.locale_for`: the chosen locale, else Telegram's, else id."""
    code = func.lower(Account.language_code)
    return case(
        (Account.locale.in_(SUPPORTED_LOCALES), Account.locale),
        (or_(code == "en", code.like("en-%")), literal("en")),
        else_=literal("id"),
    )


def _region_filter(audience: Audience) -> ColumnElement[bool] | None:
    prefix = audience.region_prefix
    if audience.group in (Group.KPM, Group.PKH, Group.BPNT):
        conditions = [Beneficiary.id == Account.beneficiary_id]
        if audience.group == Group.PKH:
            conditions.append(Beneficiary.is_pkh.is_(True))
        if audience.group == Group.BPNT:
            conditions.append(Beneficiary.is_bpnt.is_(True))
        if prefix:
            conditions.append(Beneficiary.village_code.startswith(prefix, autoescape=True))
        return exists().where(*conditions)
    role = Role.AGENT if audience.group == Group.AGENTS else Role.PARTNER
    conditions = [AccountRole.telegram_id == Account.telegram_id, AccountRole.role == role]
    if role == Role.AGENT and prefix:
        conditions.append(
            exists().where(
                EWarong.code == AccountRole.scope,
                EWarong.village_code.startswith(prefix, autoescape=True),
            )
        )
    if role == Role.PARTNER and prefix:
        # Only partners whose whole coverage lies inside the region: a regional admin
        # speaks for the region, not to a national or province-wide organisation.
        inside = PartnerCoverage.prefix.startswith(prefix, autoescape=True)
        of_partner = PartnerCoverage.partner_code == AccountRole.scope
        conditions.append(exists().where(of_partner, inside))
        conditions.append(~exists().where(of_partner, ~inside))
    return exists().where(*conditions)


def recipients_where(audience: Audience) -> list[ColumnElement[bool]]:
    """Conditions on `accounts` selecting the audience's reachable members."""
    conditions: list[ColumnElement[bool]] = [
        Account.broadcasts_off.is_(False),
        Account.blocked_bot_at.is_(None),
    ]
    region = _region_filter(audience)
    if region is not None:
        conditions.append(region)
    if audience.language is not None:
        conditions.append(effective_locale() == audience.language)
    return conditions


def _recipient_ids(audience: Audience) -> Select[tuple[int]]:
    return select(Account.telegram_id).where(*recipients_where(audience))


async def count_recipients(session: AsyncSession, audience: Audience) -> int:
    statement = select(func.count()).select_from(Account).where(*recipients_where(audience))
    return int(await session.scalar(statement) or 0)


# --------------------------------------------------------------------------- life cycle


async def create(
    session: AsyncSession,
    *,
    admin: int,
    audience: Audience,
    source_chat_id: int,
    message_id: int,
    versions: dict[str, int],
    scheduled_at: datetime,
    now: datetime,
) -> Broadcast:
    """Store a confirmed broadcast (status scheduled; "now" is a schedule at `now`)."""
    broadcast = Broadcast(
        created_by=admin,
        audience=audience.group,
        region_prefix=audience.region_prefix,
        language=audience.language,
        source_chat_id=source_chat_id,
        message_id=message_id,
        status=BroadcastStatus.SCHEDULED,
        scheduled_at=max(scheduled_at, now),
        recipients=await count_recipients(session, audience),
        created_at=now,
        versions=[
            BroadcastVersion(language=language, message_id=version)
            for language, version in sorted(versions.items())
        ],
    )
    session.add(broadcast)
    await session.flush()
    await audit.record(
        session, "broadcast.created", actor=admin, subject_type="broadcast",
        subject_id=broadcast.id, audience=audience.group, region=audience.region_prefix,
        language=audience.language, recipients=broadcast.recipients,
        scheduled_at=broadcast.scheduled_at.isoformat(),
    )  # fmt: skip
    return broadcast


async def set_progress_message(
    session: AsyncSession, broadcast_id: int, chat_id: int, message_id: int
) -> None:
    await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id)
        .values(progress_chat_id=chat_id, progress_message_id=message_id)
    )


class Action(enum.Enum):
    """Admin actions; the value is the audit event's suffix."""

    PAUSE = "paused"
    RESUME = "resumed"
    CANCEL = "cancelled"


TRANSITIONS = {
    Action.PAUSE: ((BroadcastStatus.SCHEDULED, BroadcastStatus.RUNNING), BroadcastStatus.PAUSED),
    Action.RESUME: ((BroadcastStatus.PAUSED,), BroadcastStatus.RUNNING),
    Action.CANCEL: (ACTIVE_BROADCASTS, BroadcastStatus.CANCELLED),
}


async def get_in_scope(session: AsyncSession, broadcast_id: int, scope: str) -> Broadcast | None:
    """The broadcast when it exists and its audience lies inside the admin's scope."""
    if not 0 < broadcast_id < 2**63:
        return None
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or not in_scope(scope, broadcast.region_prefix):
        return None
    return broadcast


async def change(
    session: AsyncSession,
    broadcast_id: int,
    action: Action,
    *,
    admin: int,
    scope: str,
    now: datetime,
) -> Broadcast | None:
    """Pause, resume or cancel; None when not allowed from the current state or scope.

    A resumed broadcast that never started goes back to waiting for its time.
    """
    broadcast = await get_in_scope(session, broadcast_id, scope)
    if broadcast is None:
        return None
    sources, target = TRANSITIONS[action]
    if action is Action.RESUME and broadcast.started_at is None:
        target = BroadcastStatus.SCHEDULED
    values: dict[str, object] = {"status": target}
    if target == BroadcastStatus.CANCELLED:
        values["finished_at"] = now
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status.in_(sources))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    await audit.record(
        session, f"broadcast.{action.value}", actor=admin, subject_type="broadcast",
        subject_id=broadcast_id,
    )  # fmt: skip
    await session.refresh(broadcast)
    return broadcast


async def progress(session: AsyncSession, broadcast_id: int) -> Progress | None:
    broadcast = await session.get(Broadcast, broadcast_id, populate_existing=True)
    if broadcast is None:
        return None
    sent, failed, blocked = (
        await session.execute(
            select(
                func.coalesce(func.sum(BroadcastChunk.sent), 0),
                func.coalesce(func.sum(BroadcastChunk.failed), 0),
                func.coalesce(func.sum(BroadcastChunk.blocked), 0),
            ).where(BroadcastChunk.broadcast_id == broadcast_id)
        )
    ).one()
    return Progress(
        broadcast_id=broadcast.id,
        status=broadcast.status,
        recipients=broadcast.recipients,
        sent=int(sent),
        failed=int(failed),
        blocked=int(blocked),
        started_at=broadcast.started_at,
        finished_at=broadcast.finished_at,
        scheduled_at=broadcast.scheduled_at,
    )


async def in_progress(session: AsyncSession, scope: str) -> list[Broadcast]:
    """Broadcasts not yet finished whose audience lies in the scope, oldest first."""
    statement = (
        select(Broadcast)
        .where(Broadcast.status.in_(ACTIVE_BROADCASTS))
        .order_by(Broadcast.id)
        .limit(50)
    )
    if scope:
        statement = statement.where(Broadcast.region_prefix.startswith(scope, autoescape=True))
    return list(await session.scalars(statement))


# --------------------------------------------------------------------------- delivery


async def plan(session: AsyncSession, broadcast: Broadcast, chunk_size: int) -> int:
    """Cut the recipients into chunks of `chunk_size` by keyset pagination; returns how
    many. Only ids are read, one boundary per query; the last chunk is open-ended so
    people who join before delivery reaches them are included."""
    audience = Audience.of(broadcast)
    boundary: int = -(2**63)
    chunks = 0
    while True:
        statement = (
            _recipient_ids(audience)
            .where(Account.telegram_id > boundary)
            .order_by(Account.telegram_id)
            .offset(chunk_size - 1)
            .limit(1)
        )
        last = await session.scalar(statement)
        session.add(
            BroadcastChunk(
                broadcast_id=broadcast.id, first_after=boundary, last=last, cursor=boundary
            )
        )
        chunks += 1
        if last is None:
            break
        boundary = last
    await session.flush()
    return chunks


async def start_due(session: AsyncSession, now: datetime, chunk_size: int) -> list[int]:
    """Start scheduled broadcasts whose time has come: plan their chunks and set them
    running. Each is claimed with a conditional UPDATE, so only one worker plans it."""
    due = list(
        await session.scalars(
            select(Broadcast.id)
            .where(Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.scheduled_at <= now)
            .order_by(Broadcast.scheduled_at)
            .limit(10)
        )
    )
    started: list[int] = []
    for broadcast_id in due:
        result = await session.execute(
            update(Broadcast)
            .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.SCHEDULED)
            .values(
                status=BroadcastStatus.RUNNING, started_at=func.coalesce(Broadcast.started_at, now)
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            continue
        broadcast = await session.get(Broadcast, broadcast_id, populate_existing=True)
        assert broadcast is not None
        planned = await session.scalar(
            select(func.count()).where(BroadcastChunk.broadcast_id == broadcast_id)
        )
        if not planned:
            await plan(session, broadcast, chunk_size)
            await audit.record(
                session, "broadcast.started", subject_type="broadcast", subject_id=broadcast_id
            )
        started.append(broadcast_id)
    return started


@dataclass(frozen=True)
class Claim:
    chunk_id: int
    broadcast_id: int
    cursor: int
    last: int | None


async def claim_chunk(
    session: AsyncSession, owner: str, now: datetime, lease: timedelta, skip: Sequence[int] = ()
) -> Claim | None:
    """Take one undone chunk of a running broadcast that nobody holds (or whose lease ran
    out); None when there is nothing to take. The conditional UPDATE makes the claim
    safe between workers on every backend."""
    free = or_(BroadcastChunk.lease_until.is_(None), BroadcastChunk.lease_until < now)
    candidates = list(
        (
            await session.execute(
                select(BroadcastChunk.id, BroadcastChunk.lease_until)
                .join(Broadcast, Broadcast.id == BroadcastChunk.broadcast_id)
                .where(
                    Broadcast.status == BroadcastStatus.RUNNING,
                    BroadcastChunk.done.is_(False),
                    free,
                    BroadcastChunk.id.not_in(skip) if skip else literal(True),
                )
                .order_by(BroadcastChunk.id)
                .limit(8)
            )
        ).all()
    )
    for chunk_id, lease_until in candidates:
        previous = (
            BroadcastChunk.lease_until.is_(None)
            if lease_until is None
            else BroadcastChunk.lease_until == lease_until
        )
        result = await session.execute(
            update(BroadcastChunk)
            .where(BroadcastChunk.id == chunk_id, BroadcastChunk.done.is_(False), previous)
            .values(lease_owner=owner, lease_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            row = (
                await session.execute(
                    select(
                        BroadcastChunk.broadcast_id, BroadcastChunk.cursor, BroadcastChunk.last
                    ).where(BroadcastChunk.id == chunk_id)
                )
            ).one()
            return Claim(chunk_id, row.broadcast_id, row.cursor, row.last)
    return None


async def next_page(
    session: AsyncSession, broadcast: Broadcast, claim: Claim, after: int, limit: int
) -> list[Recipient]:
    """The next recipients of a chunk after `after`, in Telegram id order."""
    statement = (
        select(Account.telegram_id, effective_locale())
        .where(*recipients_where(Audience.of(broadcast)), Account.telegram_id > after)
        .order_by(Account.telegram_id)
        .limit(limit)
    )
    if claim.last is not None:
        statement = statement.where(Account.telegram_id <= claim.last)
    rows = (await session.execute(statement)).all()
    return [Recipient(int(telegram_id), str(locale)) for telegram_id, locale in rows]


def _held(claim: Claim, owner: str) -> ColumnElement[bool]:
    return and_(BroadcastChunk.id == claim.chunk_id, BroadcastChunk.lease_owner == owner)


def _progress_statement(counter: str) -> TextClause:
    # Plain SQL, built once: this runs once per message, and a text statement costs
    # SQLAlchemy next to nothing to compile and cache.
    return text(
        f"UPDATE broadcast_chunks SET {counter} = {counter} + 1, cursor = :cursor, "
        "lease_until = :until WHERE id = :chunk AND lease_owner = :owner"
    ).bindparams(bindparam("until", type_=UtcDateTime()))


PROGRESS = {outcome: _progress_statement(outcome.value) for outcome in Outcome}


async def record_delivery(
    conn: AsyncConnection,
    claim: Claim,
    owner: str,
    recipient: int,
    outcome: Outcome,
    now: datetime,
    lease: timedelta,
    error: str | None = None,
) -> bool:
    """Move the chunk's cursor past `recipient`, count the outcome and renew the lease;
    False when the lease was lost (another worker took the chunk over: stop).

    A sent message is one UPDATE (the caller may run it in autocommit: it is the hot
    path, once per message); a block or failure adds its own rows, so the caller runs
    those in a transaction."""
    result = await conn.execute(
        PROGRESS[outcome],
        {"cursor": recipient, "until": now + lease, "chunk": claim.chunk_id, "owner": owner},
    )
    if result.rowcount != 1:
        return False
    if outcome is Outcome.BLOCKED:
        await conn.execute(
            update(Account)
            .where(Account.telegram_id == recipient, Account.blocked_bot_at.is_(None))
            .values(blocked_bot_at=now)
        )
    if outcome is Outcome.FAILED:
        await conn.execute(
            insert(BroadcastFailure).values(
                broadcast_id=claim.broadcast_id,
                telegram_id=recipient,
                error=(error or "error")[:ERROR_TEXT_LIMIT],
                created_at=now,
            )
        )
    return True


async def renew(
    session: AsyncSession, claim: Claim, owner: str, now: datetime, lease: timedelta
) -> bool:
    result = await session.execute(
        update(BroadcastChunk)
        .where(_held(claim, owner))
        .values(lease_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def release(session: AsyncSession, claim: Claim, owner: str, *, done: bool) -> None:
    """Give the chunk back (paused, stopping) or mark it delivered."""
    await session.execute(
        update(BroadcastChunk)
        .where(_held(claim, owner))
        .values(lease_owner=None, lease_until=None, done=done)
        .execution_options(synchronize_session=False)
    )


async def finish_if_complete(session: AsyncSession, broadcast_id: int, now: datetime) -> bool:
    """Mark a running broadcast done when no chunk is left; True for the one caller that
    did it (it sends the final report)."""
    undone = exists().where(
        BroadcastChunk.broadcast_id == broadcast_id, BroadcastChunk.done.is_(False)
    )
    result = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.RUNNING, ~undone)
        .values(status=BroadcastStatus.DONE, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    await audit.record(session, "broadcast.done", subject_type="broadcast", subject_id=broadcast_id)
    return True


async def finish_complete(session: AsyncSession, now: datetime) -> list[int]:
    """Mark done every running broadcast without undone chunks; returns those this call
    finished. The sweep behind `finish_if_complete`: when the last two chunks end at the
    same moment on PostgreSQL, each transaction still sees the other's chunk undone, so
    neither finishes the broadcast; the next sweep does."""
    undone = exists().where(
        BroadcastChunk.broadcast_id == Broadcast.id, BroadcastChunk.done.is_(False)
    )
    candidates = list(
        await session.scalars(
            select(Broadcast.id)
            .where(Broadcast.status == BroadcastStatus.RUNNING, ~undone)
            .limit(20)
        )
    )
    return [
        broadcast_id
        for broadcast_id in candidates
        if await finish_if_complete(session, broadcast_id, now)
    ]


async def claim_progress_report(
    session: AsyncSession, broadcast_id: int, now: datetime, every: timedelta
) -> bool:
    """True for the one worker that may edit the progress message now (at most once per
    `every`), so the admin's chat never meets flood control."""
    result = await session.execute(
        update(Broadcast)
        .where(
            Broadcast.id == broadcast_id,
            Broadcast.progress_message_id.is_not(None),
            or_(Broadcast.progress_at.is_(None), Broadcast.progress_at <= now - every),
        )
        .values(progress_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def version_for(broadcast: Broadcast, locale: str) -> int:
    """The message id a recipient with `locale` gets."""
    for version in broadcast.versions:
        if version.language == locale:
            return version.message_id
    return broadcast.message_id
