"""Admins' "Statistics" and "Pending referrals", through the chat: figures of their own
region only, no personal data."""

from __future__ import annotations

from datetime import timedelta

from models import EWarong, HelpRequest, Redemption
from services import accounts
from tests.support.broadcast import Group, populate
from tests.support.shopping import WARUNG

BANDUNG = Group(first_id=700_001, count=6, village_prefix="32.04")
BANDUNG_BPNT = Group(first_id=700_101, count=3, village_prefix="32.04", pkh=False)
MAKASSAR = Group(first_id=700_201, count=4, village_prefix="73.71")
MAKASSAR_WARUNG = {
    **WARUNG, "code": "EW-7371-001", "name": "e-Warong Losari", "village_code": "73.71.01.1001",
}  # fmt: skip


async def _world(app, sessionmaker) -> None:
    await populate(sessionmaker, BANDUNG, BANDUNG_BPNT, MAKASSAR)
    now = app.ctx.now()
    async with sessionmaker() as session, session.begin():
        session.add_all([EWarong(**WARUNG), EWarong(**MAKASSAR_WARUNG)])
        await session.flush()
        account_ids = {a: a for a in (*BANDUNG.ids, *MAKASSAR.ids)}
        from models import Account

        beneficiary = {tid: (await session.get(Account, tid)).beneficiary_id for tid in account_ids}
        rows = [
            (WARUNG["code"], BANDUNG.first_id, 50_000, now, None),
            (WARUNG["code"], BANDUNG.first_id + 1, 25_000, now, None),
            (WARUNG["code"], BANDUNG.first_id + 2, 99_000, now, now),  # reversed
            (WARUNG["code"], BANDUNG.first_id + 3, 10_000, now - timedelta(days=2), None),
            (MAKASSAR_WARUNG["code"], MAKASSAR.first_id, 70_000, now, None),
        ]
        for n, (ewarong, tid, total, when, reversed_at) in enumerate(rows):
            session.add(
                Redemption(
                    idempotency_key=f"stat-{n}", ewarong_code=ewarong, agent_telegram_id=9,
                    beneficiary_id=beneficiary[tid], items=[], total=total,
                    balance_after=0, created_at=when, reversed_at=reversed_at,
                )
            )  # fmt: skip
        requests = [
            ("NPZ-OVERDUE", "routing", "32.04", now - timedelta(minutes=5)),
            ("NPZ-ESCAL", "escalated", "32.04", None),
            ("NPZ-ACCEPT", "accepted", "32.04", None),
            ("NPZ-CLOSED", "closed", "32.04", None),
            ("NPZ-MAKASR", "escalated", "73.71", None),
        ]
        for ticket, status, region, due in requests:
            session.add(
                HelpRequest(
                    ticket=ticket, requester_telegram_id=BANDUNG.first_id, for_whom="self",
                    age_group="18_25", help_type="konseling", region_code=region,
                    note="rahasia", consent_at=now, status=status, sla_due_at=due,
                    created_at=now - timedelta(hours=3),
                )
            )  # fmt: skip


async def _admin(app, sessionmaker, scope: str | None):
    admin = await app.user("Admin", language_code="en")
    async with sessionmaker() as session, session.begin():
        if scope is None:
            await accounts.ensure_national_admins(session, [admin.id])
        else:
            await accounts.grant_admin(session, admin.id, scope, actor=None)
    await admin.send("/start")
    return admin


async def test_regional_statistics_count_only_the_region(bot_app, sessionmaker) -> None:
    await _world(bot_app, sessionmaker)
    admin = await _admin(bot_app, sessionmaker, "32.04")
    text = (await admin.press("Statistics"))[-1].text
    assert "Statistics for Kabupaten Bandung" in text or "Statistics for KAB. BANDUNG" in text
    assert "Linked KPM families: 9 (PKH 6, BPNT 9)" in text
    assert "BPNT redemptions today: 2, Rp75,000" in text
    assert "Open Napza referrals: 3 (overdue: 2)" in text
    assert "No broadcasts in progress." in text
    assert "Makassar" not in text.title() and "rahasia" not in text

    national = await _admin(bot_app, sessionmaker, None)
    text = (await national.press("Statistics"))[-1].text
    assert "Statistics for the whole country" in text
    assert "Linked KPM families: 13 (PKH 10, BPNT 13)" in text
    assert "BPNT redemptions today: 3, Rp145,000" in text
    assert "Open Napza referrals: 4 (overdue: 3)" in text


async def test_pending_referrals_list_the_region_escalated_first(bot_app, sessionmaker) -> None:
    await _world(bot_app, sessionmaker)
    admin = await _admin(bot_app, sessionmaker, "32.04")
    shown = await admin.press("Pending referrals")
    tickets = [m.text.split()[0] for m in shown]
    assert tickets == ["NPZ-ESCAL", "NPZ-OVERDUE", "NPZ-ACCEPT"]
    assert "Referred (dirujuk)" in shown[0].button_labels
    assert "has not answered in time" in shown[1].text
    joined = "\n".join(m.text for m in shown)
    assert "rahasia" not in joined and str(BANDUNG.first_id) not in joined
    # the escalated one can be closed from here
    await admin.press("Referred (dirujuk)")
    again = await admin.press("Pending referrals")
    assert [m.text.split()[0] for m in again] == ["NPZ-OVERDUE", "NPZ-ACCEPT"]


async def test_admin_buttons_are_refused_to_others(bot_app) -> None:
    user = await bot_app.user("Siti", language_code="en")
    for typed in ("Statistics", "Pending referrals", "/statistik", "/rujukan", "Broadcast"):
        assert "only for admins" in (await user.send(typed))[-1].text


async def test_admins_get_their_commands_in_their_own_menu_only(bot_app, sessionmaker) -> None:
    admin = await _admin(bot_app, sessionmaker, "32.04")  # sends /start
    menu = {entry["command"]: entry["description"] for entry in await admin.commands()}
    assert {"siaran", "statistik", "rujukan", "sengketa", "start"} <= set(menu)
    assert menu["siaran"] == "New broadcast"  # in the admin's language (English)
    other = await bot_app.user("Siti", language_code="id")
    others = {entry["command"] for entry in await other.commands()}
    assert "start" in others and not others & {"siaran", "statistik", "rujukan"}
