"""One-time deep-link invitations that bind a Telegram account to a staff role.

An admin (or the CLI) creates an invite for a role and its scope: `agent` with an
e-Warong code, `partner` with an organisation code. The invitee opens
`https://t.me/<bot>?start=inv_<token>`; the bot accepts the payload once, within
`INVITE_TTL`, and grants the role.

The token (`secrets.token_urlsafe(24)`, 192 bits) is shown once and never stored:
the database keeps only its SHA-256 hex digest, and the audit trail names the
invite by id. Single use is enforced by one conditional UPDATE, so two people
(or two workers) racing with the same link cannot both win.

Errors an operator can make (unknown role, unknown or inactive e-Warong or
partner organisation, malformed scope) raise `InviteError`, a `ValueError`,
with a message fit to show.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, AccountRole, EWarong, Invite, PartnerOrganisation
from models.enums import INVITE_ROLES, Role
from services import accounts, audit
from services.regions import in_scope

INVITE_TTL = timedelta(hours=48)
PAYLOAD_PREFIX = "inv_"
TOKEN_BYTES = 24  # 192 bits; token_urlsafe gives 32 characters
SCOPE_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
# Telegram start payloads: A-Z a-z 0-9 _ - and at most 64 characters.
START_PAYLOAD_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22,60}$")
USERNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")


class InviteError(ValueError):
    """An invite that cannot be created; the message explains why (for the operator)."""


class InviteResult(StrEnum):
    """What happened to a presented invite payload."""

    ACCEPTED = "accepted"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"  # no such invite, or not an invite payload at all


@dataclass(frozen=True)
class InviteOutcome:
    """The result of `accept_invite`; role and scope are set for known invites."""

    result: InviteResult
    role: str | None = None
    scope: str | None = None

    @property
    def accepted(self) -> bool:
        return self.result is InviteResult.ACCEPTED


def token_hash(token: str) -> str:
    """The SHA-256 hex digest under which an invite token is stored."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def is_invite_payload(payload: str | None) -> bool:
    """Whether a /start payload looks like an invite (says nothing about its validity)."""
    return payload is not None and payload.startswith(PAYLOAD_PREFIX)


def _token_of(payload: str) -> str | None:
    """The token inside an `inv_<token>` payload, or None when it is malformed."""
    if not payload.startswith(PAYLOAD_PREFIX) or len(payload) > 64:
        return None
    token = payload[len(PAYLOAD_PREFIX) :]
    return token if TOKEN_RE.match(token) else None


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("`now` must be a timezone-aware datetime")


async def create_invite(
    session: AsyncSession,
    role: str,
    scope: str,
    *,
    created_by: int | None,
    now: datetime,
    inviter_scope: str | None = None,
) -> str:
    """Create a one-time invite and return its deep-link payload (`inv_` + token).

    `inviter_scope` is the inviting admin's region ("" national; None from the CLI,
    which may invite anywhere): an admin invites agents of e-Warongs inside it, and
    only a national admin invites partner staff (partners cover regions).

    `agent` invites need an existing, active e-Warong code as scope; `partner`
    invites an existing, active partner organisation code (`import partners`).
    Raises `InviteError` for operator errors.
    The invite expires `INVITE_TTL` after `now`. Audited as `invite.created`
    (without the token).
    """
    _require_aware(now)
    if role not in INVITE_ROLES:
        raise InviteError(f"unknown role {role!r}: use one of {', '.join(INVITE_ROLES)}")
    scope = scope.strip()
    if not SCOPE_RE.match(scope):
        raise InviteError("the code must be 1-32 of A-Z a-z 0-9 . _ -")
    if role == Role.AGENT:
        ewarong = await session.get(EWarong, scope)
        if ewarong is None:
            raise InviteError(f"no e-Warong with code {scope}: import it first")
        if not ewarong.active:
            raise InviteError(f"e-Warong {scope} is inactive")
        if inviter_scope is not None and not in_scope(inviter_scope, ewarong.village_code):
            raise InviteError(f"e-Warong {scope} is outside the inviter's region")
    if role == Role.PARTNER:
        if inviter_scope:
            raise InviteError("partner staff are invited by a national admin")
        organisation = await session.get(PartnerOrganisation, scope)
        if organisation is None:
            raise InviteError(f"no partner organisation with code {scope}: import it first")
        if not organisation.active:
            raise InviteError(f"partner organisation {scope} is inactive")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invite = Invite(
        token_hash=token_hash(token),
        role=role,
        scope=scope,
        created_by=created_by,
        created_at=now,
        expires_at=now + INVITE_TTL,
    )
    session.add(invite)
    await session.flush()
    await audit.record(
        session,
        "invite.created",
        actor=created_by,
        subject_type="invite",
        subject_id=invite.id,
        role=role,
        scope=scope,
        expires_at=invite.expires_at.isoformat(),
    )
    return PAYLOAD_PREFIX + token


def deep_link(bot_username: str, payload: str) -> str:
    """`https://t.me/<bot>?start=<payload>`; a leading `@` on the username is dropped."""
    username = bot_username.strip().removeprefix("@")
    if not USERNAME_RE.match(username):
        raise ValueError("not a Telegram bot username")
    if not START_PAYLOAD_RE.match(payload):
        raise ValueError("a start payload is 1-64 of A-Z a-z 0-9 _ -")
    return f"https://t.me/{username}?start={payload}"


async def _grant(session: AsyncSession, telegram_id: int, role: str, scope: str) -> Account:
    """Give the account (created when missing) the role; an agent serves one e-Warong."""
    account = await accounts.get_or_create(session, telegram_id, None)
    for held in list(account.roles):
        if held.role == role and held.scope == scope:
            return account
    if role == Role.AGENT:
        for held in [r for r in account.roles if r.role == Role.AGENT]:
            account.roles.remove(held)
            await audit.record(
                session,
                "role.removed",
                actor=telegram_id,
                subject_type="account",
                subject_id=telegram_id,
                role=held.role,
                scope=held.scope,
                reason="moved to another e-Warong",
            )
        await session.flush()  # the old row goes before the new one arrives
    account.roles.append(AccountRole(telegram_id=telegram_id, role=role, scope=scope))
    await session.flush()
    return account


async def accept_invite(
    session: AsyncSession, payload: str, telegram_id: int, now: datetime
) -> InviteOutcome:
    """Use an invite payload for `telegram_id`: grant its role once, within its lifetime.

    The invite is claimed by a single conditional UPDATE (unused and unexpired), so
    only one caller can ever succeed; a failed claim is then told apart as USED,
    EXPIRED or UNKNOWN (also for payloads that are not well-formed invites).
    Accepting an agent invite moves an account that was the agent of another
    e-Warong to the new one. Audited as `invite.accepted`.
    """
    _require_aware(now)
    token = _token_of(payload)
    if token is None:
        return InviteOutcome(InviteResult.UNKNOWN)
    digest = token_hash(token)
    claimed = await session.execute(
        update(Invite)
        .where(
            Invite.token_hash == digest,
            Invite.used_at.is_(None),
            Invite.expires_at > now,
        )
        .values(used_at=now, used_by=telegram_id)
        .execution_options(synchronize_session=False)
    )
    invite = (
        await session.execute(
            select(Invite.id, Invite.role, Invite.scope, Invite.used_at).where(
                Invite.token_hash == digest
            )
        )
    ).one_or_none()
    if invite is None:
        return InviteOutcome(InviteResult.UNKNOWN)
    if claimed.rowcount != 1:
        result = InviteResult.USED if invite.used_at is not None else InviteResult.EXPIRED
        return InviteOutcome(result, invite.role, invite.scope)
    await _grant(session, telegram_id, invite.role, invite.scope)
    await audit.record(
        session,
        "invite.accepted",
        actor=telegram_id,
        subject_type="invite",
        subject_id=invite.id,
        role=invite.role,
        scope=invite.scope,
    )
    return InviteOutcome(InviteResult.ACCEPTED, invite.role, invite.scope)


async def remove_role(
    session: AsyncSession,
    telegram_id: int,
    role: str,
    scope: str | None,
    *,
    actor: int | None,
) -> bool:
    """Take a role (with exactly this scope; None matches a national one) from an account.

    Returns False when the account does not hold it. Audited as `role.removed`.
    """
    account = await session.get(Account, telegram_id)
    if account is None:
        return False
    held = [r for r in account.roles if r.role == role and r.scope == scope]
    if not held:
        return False
    for item in held:
        account.roles.remove(item)
    await audit.record(
        session,
        "role.removed",
        actor=actor,
        subject_type="account",
        subject_id=telegram_id,
        role=role,
        scope=scope,
    )
    await session.flush()
    return True


async def agents_of(session: AsyncSession, ewarong_code: str) -> list[int]:
    """Telegram ids of the agents of an e-Warong, in ascending order."""
    result = await session.scalars(
        select(AccountRole.telegram_id)
        .where(AccountRole.role == Role.AGENT, AccountRole.scope == ewarong_code)
        .order_by(AccountRole.telegram_id)
    )
    return list(result)
