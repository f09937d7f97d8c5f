"""Taking access away: staff roles, e-Warongs and partner organisations.

Each revocation is audited, tells the people it affects (through the outbox), and takes
effect at once: roles are read from the database on every update, the confirm statement
checks that the e-Warong is active, and routing skips inactive partners. People in the
middle of a flow of a role they lost are stopped by `tg.routers.common` (`lost_role`).

Who may do what from chat (the CLI may do everything):
- an admin removes agents and deactivates e-Warongs inside their region;
- partner staff and partner organisations are national business (partners cover
  regions across provinces), like inviting them: national admins only;
- a national admin removes any other admin; a regional admin only admins whose region
  lies strictly inside theirs. Nobody removes themselves (the last national admin
  would lock everyone out).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import AccountRole, EWarong, HelpRequest, PartnerOrganisation
from models.enums import RequestStatus, Role
from services import audit, invites, outbox
from services.bpnt import ewarongs
from services.outbox import NoticeKind
from services.regions import in_scope


class Revoked(StrEnum):
    DONE = "done"
    UNCHANGED = "unchanged"  # already so
    NOT_FOUND = "not_found"  # no such e-Warong, organisation or role holder
    OUT_OF_SCOPE = "out_of_scope"  # the acting admin may not


async def _holders(session: AsyncSession, role: str, scope: str) -> list[int]:
    return list(
        await session.scalars(
            select(AccountRole.telegram_id).where(
                AccountRole.role == role, AccountRole.scope == scope
            )
        )
    )


async def remove_role(
    session: AsyncSession,
    telegram_id: int,
    role: str,
    scope: str | None,
    now: datetime,
    *,
    actor: int | None,
) -> Revoked:
    """Take the role away (audited) and tell its holder."""
    if not await invites.remove_role(session, telegram_id, role, scope, actor=actor):
        return Revoked.NOT_FOUND
    await outbox.enqueue(
        session, telegram_id, NoticeKind.ROLE_REMOVED, now, role=role, scope=scope or ""
    )
    return Revoked.DONE


async def remove_agent(
    session: AsyncSession,
    telegram_id: int,
    ewarong_code: str,
    now: datetime,
    *,
    actor: int | None,
    actor_scope: str | None = None,
) -> Revoked:
    """An agent of an e-Warong; from chat (`actor_scope`) only inside the admin's region."""
    ewarong = await session.get(EWarong, ewarong_code)
    if ewarong is None:
        return Revoked.NOT_FOUND
    if actor_scope is not None and not in_scope(actor_scope, ewarong.village_code):
        return Revoked.OUT_OF_SCOPE
    return await remove_role(session, telegram_id, Role.AGENT, ewarong_code, now, actor=actor)


async def remove_staff(
    session: AsyncSession,
    telegram_id: int,
    partner_code: str,
    now: datetime,
    *,
    actor: int | None,
    actor_scope: str | None = None,
) -> Revoked:
    """A partner organisation's staff member; from chat, national admins only."""
    if actor_scope:
        return Revoked.OUT_OF_SCOPE
    return await remove_role(session, telegram_id, Role.PARTNER, partner_code, now, actor=actor)


async def remove_admin(
    session: AsyncSession,
    telegram_id: int,
    scope: str | None,
    now: datetime,
    *,
    actor: int | None,
    actor_scope: str | None = None,
) -> Revoked:
    """An admin role (scope None: national). From chat, see the module's rules."""
    if actor_scope is not None:
        inside = scope is not None and scope.startswith(actor_scope) and scope != actor_scope
        if telegram_id == actor or not (actor_scope == "" or inside):
            return Revoked.OUT_OF_SCOPE
    return await remove_role(session, telegram_id, Role.ADMIN, scope, now, actor=actor)


async def admin_scopes(session: AsyncSession, telegram_id: int) -> list[str | None]:
    """The scopes of the account's admin roles (None: national), for choosing one."""
    return list(
        await session.scalars(
            select(AccountRole.scope).where(
                AccountRole.telegram_id == telegram_id, AccountRole.role == Role.ADMIN
            )
        )
    )


async def set_ewarong_active(
    session: AsyncSession,
    code: str,
    active: bool,
    now: datetime,
    *,
    actor: int | None,
    actor_scope: str | None = None,
) -> Revoked:
    """Switch an e-Warong off (no lookup, no confirmation goes through) or on again; its
    agents are told either way."""
    ewarong = await session.get(EWarong, code)
    if ewarong is None:
        return Revoked.NOT_FOUND
    if actor_scope is not None and not in_scope(actor_scope, ewarong.village_code):
        return Revoked.OUT_OF_SCOPE
    if ewarong.active == active:
        return Revoked.UNCHANGED
    await ewarongs.set_active(session, code, active, actor)
    if not active:
        for agent in await _holders(session, Role.AGENT, code):
            await outbox.enqueue(session, agent, NoticeKind.EWARONG_DEACTIVATED, now, code=code)
    return Revoked.DONE


async def set_partner_active(
    session: AsyncSession,
    code: str,
    active: bool,
    now: datetime,
    *,
    actor: int | None,
    actor_scope: str | None = None,
) -> Revoked:
    """Switch a partner organisation off (it gets no new requests; the ones waiting for
    its answer move on to the next partner at the worker's next tick) or on again."""
    if actor_scope:
        return Revoked.OUT_OF_SCOPE
    partner = await session.get(PartnerOrganisation, code)
    if partner is None:
        return Revoked.NOT_FOUND
    if partner.active == active:
        return Revoked.UNCHANGED
    partner.active = active
    partner.updated_at = now
    await audit.record(
        session, "partner.activated" if active else "partner.deactivated", actor=actor,
        subject_type="partner", subject_id=code,
    )  # fmt: skip
    if not active:
        await session.execute(
            update(HelpRequest)
            .where(HelpRequest.partner_code == code, HelpRequest.status == RequestStatus.ROUTING)
            # due at once, whatever the clock: the worker moves it on at its next tick
            .values(sla_due_at=func.coalesce(HelpRequest.offered_at, HelpRequest.created_at))
        )
        for staff in await _holders(session, Role.PARTNER, code):
            await outbox.enqueue(session, staff, NoticeKind.PARTNER_DEACTIVATED, now, code=code)
    await session.flush()
    return Revoked.DONE
