"""Accounts: national admins from ADMIN_IDS, locale choice, erasure keeps staff roles."""

from __future__ import annotations

from sqlalchemy import func, select

from models import Account, AccountRole, AuditEvent
from models.base import utcnow
from services import accounts


async def test_admin_ids_become_national_admins_once(session) -> None:
    assert await accounts.ensure_national_admins(session, [11, 12]) == 2
    assert await accounts.ensure_national_admins(session, [11, 12]) == 0
    await session.commit()
    roles = (await session.scalars(select(AccountRole).order_by(AccountRole.telegram_id))).all()
    assert [(r.telegram_id, r.role, r.scope) for r in roles] == [
        (11, "admin", None),
        (12, "admin", None),
    ]
    granted = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "admin.granted")
    )
    assert granted == 2


def test_locale_choice_then_telegram_language_then_default() -> None:
    chosen = Account(telegram_id=1, locale="en")
    assert accounts.locale_for(chosen, "id") == "en"
    assert accounts.locale_for(Account(telegram_id=2), "en-GB") == "en"
    assert accounts.locale_for(Account(telegram_id=3), "fr") == "id"
    assert accounts.locale_for(None, None) == "id"


async def test_erasing_a_staff_account_keeps_the_role_but_clears_personal_data(session) -> None:
    await accounts.ensure_national_admins(session, [21])
    account = await session.get(Account, 21)
    account.locale = "en"
    account.language_code = "en"
    assert await accounts.erase(session, account, utcnow()) == []  # no Napza requests
    await session.commit()
    kept = await session.get(Account, 21)
    assert kept is not None and kept.locale is None and kept.language_code is None
    assert [(r.role, r.scope) for r in kept.roles] == [("admin", None)]


async def test_lockout_lasts_its_full_period_from_the_last_failure() -> None:
    from infra.kv import MemoryStore
    from services.lockout import Lockout

    now = [0.0]
    lockout = Lockout(MemoryStore(clock=lambda: now[0]), "link", max_failures=5, seconds=3600)
    await lockout.fail(1)
    now[0] = 3590
    for _ in range(4):
        await lockout.fail(1)
    assert await lockout.locked_for(1) == 3600
    now[0] = 3590 + 3599
    assert await lockout.locked_for(1) > 0


async def test_an_admin_with_two_covering_roles_is_listed_once(session) -> None:
    from models import AccountRole

    await accounts.ensure_national_admins(session, [31])
    account = await session.get(Account, 31)
    account.roles.append(AccountRole(telegram_id=31, role="admin", scope="32"))
    await session.flush()
    assert [a.telegram_id for a in await accounts.admins_for_region(session, "32.04.10")] == [31]
