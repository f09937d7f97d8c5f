"""Telegram accounts: load or create on each update, language choice, erasure (UU PDP)."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, AccountRole, Beneficiary, HelpRequest
from models.enums import Role
from services import audit, outbox
from services.bpnt import codes

SUPPORTED_LOCALES = ("id", "en")
LANGUAGE_CODE_MAX = 16  # the accounts.language_code column
LANGUAGE_TAG_RE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")


async def get_or_create(
    session: AsyncSession, telegram_id: int, language_code: str | None
) -> Account:
    """The account of `telegram_id`, created on first contact; remembers Telegram's language.

    Telegram's language_code is an IETF language tag ("en", "pt-br", "zh-hans"); anything
    else, or a tag longer than the 16-character column, is remembered as None (the user
    is answered in the default language). A missing one leaves the last one seen.
    """
    tag = (
        language_code
        if isinstance(language_code, str)
        and len(language_code) <= LANGUAGE_CODE_MAX
        and LANGUAGE_TAG_RE.fullmatch(language_code)
        else None
    )
    account = await session.get(Account, telegram_id)
    if account is None:
        account = Account(telegram_id=telegram_id, language_code=tag, roles=[])
        session.add(account)
        await session.flush()
    elif language_code and account.language_code != tag:
        account.language_code = tag
    return account


def role_scope(account: Account | None, role: Role) -> str | None:
    """The scope of the account's `role` (e-Warong code, region prefix, organisation
    code; "" for national), None when it does not hold the role. Pure: reads
    `account.roles`.

    The one rule for an account holding a role more than once (an agent is moved by
    `invites.accept_invite`, so it should not happen): the most recently granted wins.
    """
    if account is None:
        return None
    held = [granted for granted in account.roles if granted.role == role]
    if not held:
        return None
    latest = max(held, key=lambda r: (r.created_at is not None, r.created_at, r.id or 0))
    return latest.scope or ""


def locale_for(account: Account | None, language_code: str | None, default: str = "id") -> str:
    """The user's chosen locale, else Telegram's language when supported, else `default`."""
    if account is not None and account.locale in SUPPORTED_LOCALES:
        return account.locale
    primary = (language_code or "").split("-")[0].lower()
    return primary if primary in SUPPORTED_LOCALES else default


async def set_locale(session: AsyncSession, account: Account, locale: str) -> bool:
    """Remember the user's language choice; False for an unsupported locale."""
    if locale not in SUPPORTED_LOCALES:
        return False
    account.locale = locale
    return True


async def linked_beneficiary(session: AsyncSession, account: Account) -> Beneficiary | None:
    if account.beneficiary_id is None:
        return None
    return await session.get(Beneficiary, account.beneficiary_id)


async def erase(session: AsyncSession, account: Account, now: datetime) -> list[HelpRequest]:
    """Unlink the account and delete what the bot holds about this Telegram user.

    That includes Napza: open requests are cancelled, and every request's note, relayed
    chat and requester id are dropped (`napza.retention.erase_requester`). Registry data (the
    beneficiary, disbursements, ledger) stays; the audit trail keeps that an erasure
    happened. Returns the Napza requests it cancelled, for the caller to tell the
    partner staff or admins involved: committed first, so the erasure is durable
    before anyone is told that the requester withdrew.
    """
    from services.napza.retention import erase_requester

    withdrawn = await erase_requester(session, account.telegram_id, now)
    await outbox.drop_for(session, account.telegram_id, now)
    had_link = account.beneficiary_id is not None
    if had_link:  # a code shown on a lost phone must not stay usable
        await codes.void_codes(session, account.beneficiary_id, now)
    await audit.record(
        session,
        "account.erased",
        actor=account.telegram_id,
        subject_type="beneficiary" if had_link else None,
        subject_id=account.beneficiary_id,
    )
    if account.roles:
        # Staff roles are not the user's personal data to erase; keep only those.
        account.beneficiary_id = None
        account.linked_at = None
        account.locale = None
        account.language_code = None
    else:
        await session.delete(account)
    await session.commit()
    return withdrawn


async def ensure_national_admins(session: AsyncSession, telegram_ids: list[int]) -> int:
    """Give each id in ADMIN_IDS the national admin role (scope None); returns how many were new."""
    added = 0
    for telegram_id in telegram_ids:
        added += await grant_admin(session, telegram_id, None, actor=None, source="ADMIN_IDS")
    return added


async def admins(session: AsyncSession, limit: int) -> list[Account]:
    """Accounts holding an admin role (any scope), in Telegram id order, at most `limit`."""
    holders = select(AccountRole.telegram_id).where(AccountRole.role == Role.ADMIN)
    rows = await session.scalars(
        select(Account).where(Account.telegram_id.in_(holders)).order_by(Account.telegram_id)
        .limit(limit)
    )  # fmt: skip
    return list(rows)


async def admins_for_region(session: AsyncSession, region_code: str) -> list[Account]:
    """National admins and regional admins whose scope is a prefix of `region_code`."""
    rows = await session.scalars(
        select(Account).join(AccountRole).where(AccountRole.role == Role.ADMIN).distinct()
    )
    return [
        account
        for account in rows
        if any(
            role.role == Role.ADMIN and (not role.scope or region_code.startswith(role.scope))
            for role in account.roles
        )
    ]


async def locale_of(session: AsyncSession, telegram_id: int) -> str:
    """The language to write to this Telegram user in."""
    account = await session.get(Account, telegram_id)
    return locale_for(account, account.language_code if account else None)


async def grant_admin(
    session: AsyncSession,
    telegram_id: int,
    scope: str | None,
    *,
    actor: int | None,
    source: str = "cli",
) -> bool:
    """Make `telegram_id` an admin, national (scope None) or of a region prefix; False if
    it already is one with that scope."""
    account = await get_or_create(session, telegram_id, None)
    if any(role.role == Role.ADMIN and role.scope == scope for role in account.roles):
        return False
    account.roles.append(AccountRole(telegram_id=telegram_id, role=Role.ADMIN, scope=scope))
    await audit.record(
        session, "admin.granted", actor=actor, subject_type="account", subject_id=telegram_id,
        scope=scope, source=source,
    )  # fmt: skip
    await session.flush()
    return True


async def set_broadcasts(session: AsyncSession, account: Account, wanted: bool) -> bool:
    """/berhenti (False) and /langganan (True); returns whether anything changed."""
    off = not wanted
    if account.broadcasts_off == off:
        return False
    account.broadcasts_off = off
    await audit.record(
        session,
        "broadcasts.subscribed" if wanted else "broadcasts.unsubscribed",
        actor=account.telegram_id,
        subject_type="account",
        subject_id=account.telegram_id,
    )
    return True
