"""Revocation (issue 11, finding 10): taking access away must take effect at once.

Removing a partner's staff member, deactivating a partner organisation, removing an
admin, deactivating an e-Warong (and removing an agent): from the CLI and, for admins
in scope, from chat; audited; the person is told; someone in the middle of a flow is
stopped at their next step.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.worker import make_outbox, run_worker
from models import AccountRole, AuditEvent, HelpRequest, OutboxNotice, Redemption, RelayMessage
from services import invites
from services.napza.partners import import_partners
from tests.support.cli import cli
from tests.support.clock import NOW, Clock, install_clock
from tests.support.napza import PARTNERS_CSV, ask_for_help, napza_tick, staff
from tests.support.people import linked_kpm, make_admin, make_agent
from tests.support.shopping import WARUNG, fill_basket, shopping_code, shopping_world


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    bot_app.ids = await shopping_world(sessionmaker, bot_app.ctx.hasher, tmp_path)
    path = tmp_path / "partners.csv"
    path.write_text(PARTNERS_CSV, encoding="utf-8")
    report = await import_partners(sessionmaker, path)
    assert report.ok, report.errors
    install_clock(bot_app)
    return bot_app


async def audited(sessionmaker, action: str) -> list[AuditEvent]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


async def roles_of(sessionmaker, telegram_id: int) -> set[tuple[str, str | None]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(AccountRole.role, AccountRole.scope).where(
                AccountRole.telegram_id == telegram_id
            )
        )
        return {(role, scope) for role, scope in rows}


async def sales(sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Redemption)) or 0)


async def test_finding_10_an_agent_removed_mid_sale_cannot_confirm_it(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    admin = await make_admin(app, sessionmaker, scope="32.04")
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    removed = (await admin.send(f"/hapus_agen {agent.id} {WARUNG['code']}"))[-1].text
    assert "Agen dihapus" in removed
    await agent.press("Konfirmasi")
    assert "tidak lagi punya akses" in (await agent.callback_answers())[-1]["text"]
    assert await sales(sessionmaker) == 0
    assert "Transaksi baru" not in (await agent.reply_keyboard() or [])
    assert [e.actor_telegram_id for e in await audited(sessionmaker, "role.removed")] == [admin.id]
    assert await app.deliver_notices() == 1
    assert "Anda bukan lagi agen e-Warong EW-3204-001" in (await agent.last()).text


async def test_finding_10_a_removed_agent_typing_the_next_step_is_stopped(
    app, sessionmaker, settings
):
    agent, _ = await make_agent(app, sessionmaker)
    await agent.press("Transaksi baru")
    result = await cli(settings, "agent", "remove", str(agent.id), WARUNG["code"])
    assert result.exit_code == 0, result.output
    kpm = await linked_kpm(app)
    reply = (await agent.send(await shopping_code(kpm)))[-1].text
    assert "tidak lagi punya akses" in reply and "Siti" not in reply
    assert await app.deliver_notices() == 1


async def test_finding_10_partner_staff_removed_mid_chat_relay_nothing_more(
    app, sessionmaker, settings
):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    requester = await app.user("Rina")
    await ask_for_help(requester)
    await ana.press("Terima")
    await ana.press("Balas")  # Ana is typing a reply to the requester
    before = len(await requester.messages())
    result = await cli(settings, "partner", "remove-staff", str(ana.id), "IPWL-3204")
    assert result.exit_code == 0 and "no longer staff" in result.output
    assert "tidak lagi punya akses" in (await ana.send("Datang besok ya"))[-1].text
    assert len(await requester.messages()) == before  # nothing relayed
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(RelayMessage)) == 0
    assert [e.details["role"] for e in await audited(sessionmaker, "role.removed")] == ["partner"]
    again = await cli(settings, "partner", "remove-staff", str(ana.id), "IPWL-3204")
    assert again.exit_code == 1


async def test_finding_10_a_deactivated_partner_gets_no_new_requests(app, sessionmaker, settings):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    citra = await staff(app, sessionmaker, "PKM-32", "Citra")
    waiting = await ask_for_help(await app.user("Rina"))  # offered to IPWL-3204 first
    result = await cli(settings, "partner", "deactivate", "IPWL-3204")
    assert result.exit_code == 0, result.output
    fresh = await ask_for_help(await app.user("Tono"))
    assert fresh not in " ".join(m.text for m in await ana.messages())
    assert fresh in (await citra.last()).text
    # the request that was waiting for its answer moves on at the worker's next tick
    await napza_tick(app, sessionmaker)
    assert waiting in " ".join(m.text for m in await citra.messages())
    async with sessionmaker() as session:
        moved = await session.scalar(select(HelpRequest).where(HelpRequest.ticket == waiting))
        assert moved.partner_code == "PKM-32"
    assert await audited(sessionmaker, "partner.deactivated")
    await app.deliver_notices()
    assert "IPWL-3204 telah dinonaktifkan" in (await ana.last()).text
    assert (await cli(settings, "partner", "activate", "IPWL-3204")).exit_code == 0


async def test_finding_10_admin_removal_follows_the_scope(app, sessionmaker, settings):
    national = await make_admin(app, sessionmaker, "National")
    west_java = await make_admin(app, sessionmaker, "Jabar", scope="32")
    bandung = await make_admin(app, sessionmaker, "Bandung", scope="32.04")
    makassar = await make_admin(app, sessionmaker, "Makassar", scope="73.71")
    outside = "di luar wewenang"
    assert outside in (await west_java.send(f"/hapus_admin {national.id}"))[-1].text
    assert outside in (await west_java.send(f"/hapus_admin {makassar.id}"))[-1].text
    assert outside in (await bandung.send(f"/hapus_admin {bandung.id}"))[-1].text  # self
    assert outside in (await national.send(f"/hapus_admin {national.id}"))[-1].text
    assert "Admin dihapus" in (await west_java.send(f"/hapus_admin {bandung.id}"))[-1].text
    assert await roles_of(sessionmaker, bandung.id) == set()
    assert "Admin dihapus" in (await national.send(f"/hapus_admin {makassar.id}"))[-1].text
    result = await cli(settings, "admin", "remove", str(west_java.id), "--scope", "32")
    assert result.exit_code == 0, result.output
    assert await roles_of(sessionmaker, west_java.id) == set()
    # a removed admin loses the admin commands at once
    assert "hanya untuk admin" in (await west_java.send("/statistik"))[-1].text.lower()
    events = await audited(sessionmaker, "role.removed")
    assert [e.subject_id for e in events] == [str(bandung.id), str(makassar.id), str(west_java.id)]


async def test_finding_10_an_admin_removed_while_composing_a_broadcast_sends_nothing(
    app, sessionmaker
):
    national = await make_admin(app, sessionmaker, "National")
    regional = await make_admin(app, sessionmaker, "Bandung", scope="32.04")
    await regional.send("/siaran")
    await national.send(f"/hapus_admin {regional.id}")
    await regional.press("Semua keluarga KPM")
    assert "tidak lagi punya akses" in (await regional.callback_answers())[-1]["text"]
    assert "Semua keluarga KPM" not in (await regional.last()).text


async def test_finding_10_ewarong_and_partner_switches_from_chat_are_scoped(app, sessionmaker):
    kota_bandung = await make_admin(app, sessionmaker, "Kota", scope="32.73")
    national = await make_admin(app, sessionmaker, "National")
    reply = (await kota_bandung.send(f"/nonaktif_ewarong {WARUNG['code']}"))[-1].text
    assert "di luar wewenang" in reply
    assert "di luar wewenang" in (await kota_bandung.send("/nonaktif_mitra PKM-32"))[-1].text
    assert "dinonaktifkan" in (await national.send("/nonaktif_mitra PKM-32"))[-1].text
    assert "Tidak ada yang berubah" in (await national.send("/nonaktif_mitra PKM-32"))[-1].text
    assert "Tidak ditemukan" in (await national.send("/nonaktif_ewarong EW-0000"))[-1].text
    assert "Cara pakai" in (await national.send("/nonaktif_ewarong"))[-1].text
    await national.send("/start")  # the admin's own command menu
    commands = {c["command"] for c in await national.commands()}
    assert {"hapus_mitra", "hapus_admin", "nonaktif_ewarong", "nonaktif_mitra"} <= commands


async def test_finding_10_the_worker_delivers_the_notices(app, sessionmaker, settings):
    agent, _ = await make_agent(app, sessionmaker)
    assert (await cli(settings, "ewarong", "deactivate", WARUNG["code"])).exit_code == 0
    settings.worker_interval_seconds = 0.05
    stop = asyncio.Event()

    async def notify(_delivery) -> None:
        return None

    outbox = make_outbox(app.bot, app.dp.workflow_data["i18n"], sessionmaker)
    worker = asyncio.ensure_future(
        run_worker(sessionmaker, notify, settings, Clock(NOW + timedelta(days=1)), stop, outbox)
    )
    for _ in range(100):
        if "telah dinonaktifkan" in (await agent.last()).text:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await worker
    assert "e-Warong EW-3204-001 telah dinonaktifkan" in (await agent.last()).text
    async with sessionmaker() as session:
        notice = (await session.scalars(select(OutboxNotice))).one()
        assert notice.sent_at is not None and notice.failed is None


async def test_finding_10_a_blocked_bot_ends_a_notice_for_good(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    async with sessionmaker() as session, session.begin():
        from services import revocation

        await revocation.remove_agent(session, agent.id, WARUNG["code"], NOW, actor=None)
    await agent.block()
    assert await app.deliver_notices() == 0
    async with sessionmaker() as session:
        notice = (await session.scalars(select(OutboxNotice))).one()
        assert notice.failed == "TelegramForbiddenError" and notice.sent_at is not None
    assert await app.deliver_notices() == 0  # not tried again


async def test_finding_10_an_invite_of_a_deactivated_ewarong_cannot_be_created(
    app, sessionmaker, settings
):
    assert (await cli(settings, "ewarong", "deactivate", WARUNG["code"])).exit_code == 0
    async with sessionmaker() as session, session.begin():
        with pytest.raises(invites.InviteError):
            await invites.create_invite(session, "agent", WARUNG["code"], created_by=None, now=NOW)
    assert (await cli(settings, "ewarong", "activate", WARUNG["code"])).exit_code == 0
    assert "Nothing changed" in (await cli(settings, "ewarong", "activate", WARUNG["code"])).output
