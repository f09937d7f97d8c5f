"""One-time invites: creation, single use, expiry, forged payloads, only hashes stored."""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Account, AccountRole, AuditEvent, Invite
from models.enums import Role
from services import accounts
from services.accounts import role_scope
from services.bpnt.ewarongs import import_ewarongs, set_active
from services.invites import (
    INVITE_TTL,
    InviteError,
    InviteOutcome,
    InviteResult,
    accept_invite,
    agents_of,
    create_invite,
    deep_link,
    is_invite_payload,
    remove_role,
    token_hash,
)
from tests.support.clock import NOW

HEADER = "code,name,village_code,address,latitude,longitude,bank"
SHOPS = (
    "BDG-01,Warung Bu Siti,32.73.01.1001,Jl. Diponegoro 22,-6.9025,107.6187,BRI",
    "BDG-02,e-Warong Alun-alun,32.73.01.1001,Jl. Asia Afrika 1,-6.9218,107.6070,BNI",
    "MKS-01,Warung Losari,73.71.01.1001,Jl. Penghibur 1,-5.1436,119.4075,BRI",
)
AGENT, OTHER = 5_000_001, 5_000_002
URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.fixture
async def shops(sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path) -> None:
    path = tmp_path / "ewarongs.csv"
    path.write_text("\n".join([HEADER, *SHOPS]) + "\n", encoding="utf-8")
    report = await import_ewarongs(sessionmaker, path)
    assert report.ok and report.inserted == 3, report.errors


async def invite(
    sessionmaker: async_sessionmaker[AsyncSession],
    role: str = "agent",
    scope: str = "BDG-01",
    now: datetime = NOW,
) -> str:
    async with sessionmaker() as session, session.begin():
        return await create_invite(session, role, scope, created_by=900, now=now)


async def accept(
    sessionmaker: async_sessionmaker[AsyncSession],
    payload: str,
    telegram_id: int = AGENT,
    now: datetime = NOW + timedelta(hours=1),
) -> InviteOutcome:
    async with sessionmaker() as session, session.begin():
        return await accept_invite(session, payload, telegram_id, now)


async def roles_of(session: AsyncSession, telegram_id: int) -> list[tuple[str, str | None]]:
    rows = await session.execute(
        select(AccountRole.role, AccountRole.scope)
        .where(AccountRole.telegram_id == telegram_id)
        .order_by(AccountRole.role, AccountRole.scope)
    )
    return [tuple(row) for row in rows]


# --- creating ----------------------------------------------------------------------


async def test_payload_is_a_long_url_safe_token_stored_only_as_its_hash(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    payload = await invite(sessionmaker)
    assert payload.startswith("inv_") and is_invite_payload(payload)
    token = payload.removeprefix("inv_")
    assert len(token) >= 22 and URL_SAFE.match(token)
    assert len(payload) <= 64 and URL_SAFE.match(payload)
    stored = (await session.execute(select(Invite))).scalar_one()
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() == token_hash(token)
    assert (stored.role, stored.scope, stored.created_by) == ("agent", "BDG-01", 900)
    assert stored.expires_at == NOW + INVITE_TTL == NOW + timedelta(hours=48)
    assert stored.used_at is None and stored.used_by is None
    # The raw token is nowhere in the database: not in the invite, not in the audit trail.
    for table in ("invites", "audit_events"):
        for row in await session.execute(text(f"SELECT * FROM {table}")):
            assert token not in " ".join(str(value) for value in row)
    event = (await session.execute(select(AuditEvent))).scalar_one()
    assert (event.action, event.actor_telegram_id, event.subject_type) == (
        "invite.created",
        900,
        "invite",
    )
    assert event.subject_id == str(stored.id)
    assert event.details["role"] == "agent" and event.details["scope"] == "BDG-01"


async def test_every_invite_has_its_own_token(
    sessionmaker: async_sessionmaker[AsyncSession], shops: None
) -> None:
    payloads = {await invite(sessionmaker) for _ in range(20)}
    assert len(payloads) == 20


async def test_tokens_are_at_least_128_random_bits_from_the_secrets_module(
    sessionmaker: async_sessionmaker[AsyncSession],
    shops: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The link is the only credential an agent or partner needs: it must be unguessable."""
    import secrets

    real = secrets.token_urlsafe
    drawn: list[tuple[int | None, str]] = []

    def spy(nbytes: int | None = None) -> str:
        token = real(nbytes)
        drawn.append((nbytes, token))
        return token

    monkeypatch.setattr(secrets, "token_urlsafe", spy)
    payload = await invite(sessionmaker)
    assert len(drawn) == 1
    nbytes, token = drawn[0]
    assert nbytes is not None and nbytes * 8 >= 128
    assert payload == "inv_" + token  # the whole draw, neither cut nor transformed
    assert len(token) * 6 >= 128  # base64url: 6 bits a character


async def test_agent_invites_need_an_active_ewarong(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    with pytest.raises(InviteError, match="no e-Warong with code NOPE"):
        await invite(sessionmaker, scope="NOPE")
    async with sessionmaker() as work, work.begin():
        await set_active(work, "BDG-02", False, actor=None)
    with pytest.raises(InviteError, match="BDG-02 is inactive"):
        await invite(sessionmaker, scope="BDG-02")
    with pytest.raises(InviteError, match="unknown role"):
        await invite(sessionmaker, role="admin")
    for bad in ("", "has space", "x" * 33, "<b>"):
        with pytest.raises(InviteError):
            await invite(sessionmaker, role="partner", scope=bad)
    with pytest.raises(ValueError, match="timezone-aware"):
        await invite(sessionmaker, now=NOW.replace(tzinfo=None))
    assert (await session.execute(select(Invite))).first() is None


async def test_partner_invites_need_an_active_organisation(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession
) -> None:
    from models import PartnerOrganisation

    with pytest.raises(InviteError):
        await invite(sessionmaker, role="partner", scope="IPWL-3273")
    async with sessionmaker() as s, s.begin():
        s.add(
            PartnerOrganisation(
                code="IPWL-3273",
                name="IPWL Kota Bandung",
                kind="ipwl",
                phone="",
                services="",
                active=True,
            )
        )
    payload = await invite(sessionmaker, role="partner", scope="IPWL-3273")
    outcome = await accept(sessionmaker, payload)
    assert outcome == InviteOutcome(InviteResult.ACCEPTED, "partner", "IPWL-3273")
    assert await roles_of(session, AGENT) == [("partner", "IPWL-3273")]


def test_deep_link() -> None:
    payload = "inv_" + "A" * 32
    assert deep_link("bansos_bot", payload) == f"https://t.me/bansos_bot?start={payload}"
    assert deep_link("@bansos_bot", payload) == f"https://t.me/bansos_bot?start={payload}"
    with pytest.raises(ValueError):
        deep_link("bansos_bot", "inv_" + "A" * 61)  # 65 characters
    with pytest.raises(ValueError):
        deep_link("bansos_bot", "inv_a+b")
    with pytest.raises(ValueError):
        deep_link("bad name", payload)


# --- accepting ---------------------------------------------------------------------


async def test_accepting_grants_the_role_once(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    payload = await invite(sessionmaker)
    outcome = await accept(sessionmaker, payload)
    assert outcome == InviteOutcome(InviteResult.ACCEPTED, "agent", "BDG-01")
    assert outcome.accepted
    account = await session.get(Account, AGENT)
    assert account is not None  # created on acceptance
    assert agent_scope(account) == "BDG-01"
    assert await agents_of(session, "BDG-01") == [AGENT]
    stored = (await session.execute(select(Invite))).scalar_one()
    assert (stored.used_at, stored.used_by) == (NOW + timedelta(hours=1), AGENT)
    # Replayed, by the same person or by someone the link was forwarded to.
    assert await accept(sessionmaker, payload) == InviteOutcome(
        InviteResult.USED, "agent", "BDG-01"
    )
    outcome = await accept(sessionmaker, payload, OTHER)
    assert outcome.result is InviteResult.USED and not outcome.accepted
    assert await roles_of(session, OTHER) == []
    assert await session.get(Account, OTHER) is None
    actions = await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id))
    assert list(actions) == ["invite.created", "invite.accepted"]


async def test_invites_expire_after_48_hours(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    late = await invite(sessionmaker)
    outcome = await accept(sessionmaker, late, now=NOW + INVITE_TTL + timedelta(seconds=1))
    assert outcome == InviteOutcome(InviteResult.EXPIRED, "agent", "BDG-01")
    outcome = await accept(sessionmaker, late, now=NOW + INVITE_TTL)
    assert outcome.result is InviteResult.EXPIRED  # the 48th hour is the end
    assert await roles_of(session, AGENT) == []
    just_in_time = await invite(sessionmaker)
    outcome = await accept(sessionmaker, just_in_time, now=NOW + INVITE_TTL - timedelta(seconds=1))
    assert outcome.result is InviteResult.ACCEPTED
    # Once used, it says "used" even after it would have expired.
    outcome = await accept(sessionmaker, just_in_time, now=NOW + timedelta(days=10))
    assert outcome.result is InviteResult.USED


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "inv_",
        "hello",
        "inv_short",
        "inv_" + "A" * 61,
        "inv_../../etc/passwd",
        "inv_' OR 1=1 --aaaaaaaaaaaaaaaaaaaa",
        "inv_%00" + "a" * 30,
        "inv_" + "\u0410" * 32,  # Cyrillic look-alikes
    ],
)
async def test_forged_payloads_are_unknown(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, payload: str
) -> None:
    assert await accept(sessionmaker, payload) == InviteOutcome(InviteResult.UNKNOWN)
    assert await session.get(Account, AGENT) is None


async def test_unknown_and_tampered_tokens(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    payload = await invite(sessionmaker)
    token = payload.removeprefix("inv_")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert (await accept(sessionmaker, "inv_" + flipped)).result is InviteResult.UNKNOWN
    assert (await accept(sessionmaker, "inv_" + "B" * 32)).result is InviteResult.UNKNOWN
    assert (await accept(sessionmaker, token)).result is InviteResult.UNKNOWN  # no prefix
    # Presenting the stored hash instead of the token gets nowhere either.
    stored = (await session.execute(select(Invite.token_hash))).scalar_one()
    assert (await accept(sessionmaker, "inv_" + stored[:60])).result is InviteResult.UNKNOWN
    assert (await accept(sessionmaker, payload)).result is InviteResult.ACCEPTED


async def test_racing_acceptances_let_exactly_one_win(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    payload = await invite(sessionmaker)
    outcomes = await asyncio.gather(
        *(accept(sessionmaker, payload, telegram_id) for telegram_id in (AGENT, OTHER))
    )
    assert sorted(outcome.result for outcome in outcomes) == [
        InviteResult.ACCEPTED,
        InviteResult.USED,
    ]
    holders = await agents_of(session, "BDG-01")
    assert len(holders) == 1


async def test_no_duplicate_role_and_an_agent_serves_one_ewarong(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    async with sessionmaker() as work, work.begin():
        await accounts.ensure_national_admins(work, [AGENT])
    for _ in range(2):
        outcome = await accept(sessionmaker, await invite(sessionmaker))
        assert outcome.result is InviteResult.ACCEPTED
    assert await roles_of(session, AGENT) == [("admin", None), ("agent", "BDG-01")]
    assert (await accept(sessionmaker, await invite(sessionmaker, scope="MKS-01"))).accepted
    assert await roles_of(session, AGENT) == [("admin", None), ("agent", "MKS-01")]
    assert await agents_of(session, "BDG-01") == []
    assert await agents_of(session, "MKS-01") == [AGENT]
    account = await session.get(Account, AGENT)
    assert agent_scope(account) == "MKS-01"
    moved = await session.scalar(
        select(AuditEvent).where(AuditEvent.action == "role.removed").order_by(AuditEvent.id)
    )
    assert moved is not None and moved.details["scope"] == "BDG-01"


async def test_remove_role_and_agents_of(
    sessionmaker: async_sessionmaker[AsyncSession], session: AsyncSession, shops: None
) -> None:
    for telegram_id in (OTHER, AGENT):
        assert (await accept(sessionmaker, await invite(sessionmaker), telegram_id)).accepted
    assert await agents_of(session, "BDG-01") == [AGENT, OTHER]
    async with sessionmaker() as work, work.begin():
        assert await remove_role(work, AGENT, "agent", "BDG-01", actor=900)
    async with sessionmaker() as work, work.begin():
        assert not await remove_role(work, AGENT, "agent", "BDG-01", actor=900)
        assert not await remove_role(work, OTHER, "agent", "MKS-01", actor=900)
        assert not await remove_role(work, 123, "agent", "BDG-01", actor=900)
    assert await agents_of(session, "BDG-01") == [OTHER]
    assert await session.get(Account, AGENT) is not None  # the account stays
    event = await session.scalar(select(AuditEvent).where(AuditEvent.action == "role.removed"))
    assert event is not None
    assert (event.actor_telegram_id, event.subject_id) == (900, str(AGENT))
    assert event.details == {"role": "agent", "scope": "BDG-01"}


def test_role_scope_takes_the_latest_grant() -> None:
    assert agent_scope(None) is None
    assert agent_scope(Account(telegram_id=1, roles=[])) is None
    admin = Account(telegram_id=1, roles=[AccountRole(role="admin", scope="32")])
    assert agent_scope(admin) is None
    older = AccountRole(role="agent", scope="OLD", created_at=NOW)
    newer = AccountRole(role="agent", scope="NEW", created_at=NOW + timedelta(days=1))
    both = Account(telegram_id=1, roles=[newer, AccountRole(role="partner", scope="P"), older])
    assert agent_scope(both) == "NEW"


def agent_scope(account: Account | None) -> str | None:
    return role_scope(account, Role.AGENT)
