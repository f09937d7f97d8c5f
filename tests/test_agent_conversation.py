"""e-Warong redemptions end to end: KPM code → agent basket → confirm → both receipts."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from models import AuditEvent, LedgerEntry, Redemption
from services import invites
from tests.support.clock import NOW, install_clock
from tests.support.people import linked_kpm, make_agent
from tests.support.shopping import (
    OTHER_WARUNG,
    WARUNG,
    fill_basket,
    shopping_code,
    shopping_world,
)


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    bot_app.ids = await shopping_world(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    return bot_app


async def test_redemption_with_code_gives_both_receipts_and_debits_once(app, sessionmaker, session):
    agent, _ = await make_agent(app, sessionmaker)
    assert "Transaksi baru" in (await agent.reply_keyboard() or [])
    kpm = await linked_kpm(app)
    code = await shopping_code(kpm)

    counter = await fill_basket(agent, code)
    assert any("Siti A***" in m.text and "Rp400.000" in m.text for m in counter)
    assert all("3204105507850003" not in m.text and "Aminah" not in m.text for m in counter)
    summary = (await agent.press("Selesai"))[-1]
    assert "Total: Rp60.000" in summary.text and "Saldo setelahnya: Rp340.000" in summary.text

    counted = REGISTRY.get_sample_value("bansos_redemptions_total") or 0
    confirmed = await agent.press("Konfirmasi")
    receipt = next(m for m in confirmed if m.message_id == summary.message_id)
    assert receipt.edited and "Struk #" in receipt.text and "Sisa saldo: Rp340.000" in receipt.text
    assert "WIB" in receipt.text and "e-Warong Sri Rejeki" in receipt.text
    family_copy = await kpm.last()
    assert "Sisa saldo: Rp340.000" in family_copy.text
    assert family_copy.button("Bukan saya / laporkan")

    # a double press of the old button: already confirmed, no second debit
    await agent.callback(summary.message_id, summary.button("Konfirmasi")["callback_data"])
    assert (await agent.callback_answers())[-1]["text"] == "Transaksi ini sudah dikonfirmasi."
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 1
    assert REGISTRY.get_sample_value("bansos_redemptions_total") == counted + 1  # /metrics
    status = (await kpm.press("Status bantuan"))[-1].text
    assert "Saldo saat ini: Rp340.000" in status and "Belanja di e-Warong -Rp60.000" in status


async def test_second_agent_with_the_same_code_gets_already_confirmed(app, sessionmaker, session):
    first, _ = await make_agent(app, sessionmaker, name="Agus")
    second, _ = await make_agent(app, sessionmaker, name="Dedi")
    kpm = await linked_kpm(app)
    code = await shopping_code(kpm)
    await fill_basket(first, code)
    await fill_basket(second, code)
    await first.press("Selesai")
    await second.press("Selesai")
    await first.press("Konfirmasi")
    replies = await second.press("Konfirmasi")
    assert any("sudah dikonfirmasi" in m.text for m in replies)
    entries = await session.scalar(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.kind == "redemption")
    )
    assert entries == 1


async def test_expired_code_is_refused(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    code = await shopping_code(kpm)
    app.clock.now = NOW + timedelta(minutes=10, seconds=1)
    await agent.press("Transaksi baru")
    reply = (await agent.send(code))[-1].text
    assert "Tidak berlaku" in reply and "Sisa 4 percobaan" in reply


async def test_five_wrong_codes_lock_the_agent_out(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    await agent.press("Transaksi baru")
    for left in (4, 3, 2, 1):
        assert f"Sisa {left} percobaan" in (await agent.send("100000000000"))[-1].text
    assert "dihentikan sementara" in (await agent.send("100000000000"))[-1].text
    assert "dihentikan sementara" in (await agent.press("Transaksi baru"))[-1].text


async def test_agent_of_another_ewarong_cannot_use_this_agents_buttons(app, sessionmaker, session):
    agent, _ = await make_agent(app, sessionmaker)
    stranger, _ = await make_agent(app, sessionmaker, OTHER_WARUNG, name="Eko")
    kpm = await linked_kpm(app)
    await fill_basket(agent, await shopping_code(kpm))
    summary = (await agent.press("Selesai"))[-1]
    data = summary.button("Konfirmasi")["callback_data"]
    own = (await stranger.last()).message_id  # forged data on a message in their own chat
    await stranger.callback(own, data)
    assert (await stranger.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    await stranger.callback(own, "bsk:item:beras")
    assert (await stranger.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 0
    # and a plain KPM pressing an agent's button gets nothing either
    await kpm.callback((await kpm.last()).message_id, data)
    assert (await kpm.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."


@pytest.mark.parametrize("typed", ["0", "-5000", "lima ribu", "2 x 0", "x" * 5000])
async def test_bad_amounts_are_refused_politely(app, sessionmaker, typed):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await agent.press("Transaksi baru")
    await agent.send(await shopping_code(kpm))
    await agent.press("Ikan")
    assert "nominal positif" in (await agent.send(typed))[-1].text
    assert "Ikan 1 × Rp25.000" in (await agent.send("25000"))[-1].text


async def test_amount_above_balance_is_refused(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await agent.press("Transaksi baru")
    await agent.send(await shopping_code(kpm))
    await agent.press("Masukkan total saja")
    assert "Melebihi saldo yang tersedia (Rp400.000)" in (await agent.send("400001"))[-1].text
    summary = (await agent.send("400000"))[-1]
    assert "Saldo setelahnya: Rp0" in summary.text
    assert "• Belanja (total): Rp400.000" in summary.text
    assert "1 ×" not in summary.text  # a typed total is no "1 × Rp400.000"


async def test_family_without_telegram_pays_by_kks_and_is_agent_attested(
    app, sessionmaker, session
):
    agent, _ = await make_agent(app, sessionmaker)
    await agent.press("Transaksi baru")
    replies = await agent.send("5264 2212 3456 7890")
    assert "4 angka terakhir NIK" in replies[-1].text
    assert all("Siti" not in m.text for m in replies)  # the card alone shows nothing
    replies = await agent.send("0003")
    assert "Siti A***" in replies[-1].text and "pemegang kartu hadir" in replies[-1].text
    assert "Rp400.000" not in replies[-1].text
    replies = await agent.press("Pemegang kartu hadir, KTP dicek")
    assert any("pernyataan Anda sebagai agen" in m.text for m in replies)
    await agent.press("Masukkan total saja")
    await agent.send("50000")
    await agent.press("Konfirmasi")
    redemption = await session.scalar(select(Redemption))
    assert redemption.agent_attested is True and redemption.total == 50_000


async def test_locked_family_cannot_be_charged(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await fill_basket(agent, await shopping_code(kpm))  # a basket filled before the lock
    await agent.press("Selesai")
    await kpm.press("Kunci belanja")
    replies = await kpm.press("Kunci sekarang")
    assert "sekarang terkunci" in replies[-1].text
    assert any("tidak dapat diproses" in m.text for m in await agent.press("Konfirmasi"))
    assert "terkunci" in (await kpm.press("Kode belanja"))[-1].text
    await kpm.press("Kunci belanja")
    await kpm.press("Buka kunci belanja")
    code = await shopping_code(kpm)
    await agent.press("Transaksi baru")
    assert any("Siti A***" in m.text for m in await agent.send(code))


async def test_dispute_freezes_codes_until_an_admin_reverses(app, sessionmaker, session):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    admin = await app.user("Admin")
    from services import accounts

    async with sessionmaker() as s, s.begin():
        await accounts.ensure_national_admins(s, [admin.id])
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    await agent.press("Konfirmasi")
    asked = await kpm.press("Bukan saya / laporkan")  # asked once: nothing frozen yet
    assert asked[-1].edited and "Laporkan transaksi ini?" in asked[-1].text
    assert "Rp60.000" in asked[-1].text  # the receipt stays in the same message
    kept = await kpm.press("Tidak, itu saya")
    assert "Laporkan transaksi ini?" not in kept[-1].text
    assert kept[-1].button("Bukan saya / laporkan")
    await kpm.press("Bukan saya / laporkan")
    replies = await kpm.press("Ya, laporkan")
    assert "dilaporkan kepada admin" in replies[-1].text
    assert "terkunci" in (await kpm.press("Kode belanja"))[-1].text

    alert = await admin.last()
    assert "melaporkan transaksi" in alert.text and "Rp60.000" in alert.text
    listed = await admin.send("/sengketa")
    assert "Rp60.000" in listed[-1].text
    await admin.press(listed[-1].button_labels[0])
    assert "dana sudah kembali" in (await admin.send("KPM tidak berbelanja hari itu"))[-1].text
    assert await app.deliver_notices() == 1  # the family is told the outcome
    told = await kpm.last()
    assert "sudah diperiksa" in told.text and "Rp60.000 sudah kembali" in told.text
    status = (await kpm.press("Status bantuan"))[-1].text
    assert "Saldo saat ini: Rp400.000" in status and "Belanja dibatalkan +Rp60.000" in status
    assert re.search(r"<b>\d{4} \d{4} \d{4}</b>", (await kpm.send("/kode"))[-1].html)  # unfrozen
    reversed_ = await session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "redemption.reversed")
    )
    assert reversed_ == 1


async def test_today_and_csv_export_reconcile_to_the_ledger(app, sessionmaker, session):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    for _ in range(2):
        await fill_basket(agent, await shopping_code(kpm))
        await agent.press("Selesai")
        await agent.press("Konfirmasi")
    today = (await agent.press("Transaksi hari ini"))[-1].text
    assert "2 transaksi, total Rp120.000" in today
    document = (await agent.press("Ekspor CSV"))[-1]
    assert document.kind == "document" and document.document["file_name"].endswith(".csv")
    assert document.text.startswith("Jumlah transaksi "), document.text
    rows = list(
        csv.DictReader(io.StringIO((await app.client.file(document.document["file_id"])).decode()))
    )
    assert len(rows) == 2 and sum(int(r["total"]) for r in rows) == 120_000
    debits = await session.scalar(
        select(func.sum(LedgerEntry.amount)).where(LedgerEntry.kind == "redemption")
    )
    assert -debits == 120_000
    assert {r["family"] for r in rows} == {"Siti A***"}


async def test_non_agents_are_refused_agent_menus(app):
    user = await app.user("Siti")
    for label in ("Transaksi baru", "Ekspor CSV"):
        assert "hanya untuk agen" in (await user.send(label))[-1].text
    assert "hanya untuk admin" in (await user.send("/sengketa"))[-1].text


async def test_invite_links_are_single_use_and_expire(app, sessionmaker):
    _, payload = await make_agent(app, sessionmaker)
    again = await app.user("Copycat")
    assert "sudah dipakai" in (await again.send(f"/start {payload}"))[-1].text
    async with sessionmaker() as session, session.begin():
        late = await invites.create_invite(
            session, "agent", WARUNG["code"], created_by=None, now=NOW
        )
    app.clock.now = NOW + timedelta(hours=48, seconds=1)
    assert "kedaluwarsa" in (await again.send(f"/start {late}"))[-1].text
    assert "tidak valid" in (await again.send("/start inv_forgedforgedforgedforged"))[-1].text


async def test_nearest_ewarongs_from_a_shared_location(app):
    user = await app.user("Budi")
    await user.send("/start")
    await user.press("e-Warong terdekat")
    replies = await user.share_location(-6.94, 107.56)
    text = next(m.text for m in replies if "terdekat" in m.text)
    assert text.index("Sri Rejeki") < text.index("Berkah")
    assert re.search(r"— \d+,\d km", text), text  # Indonesian decimal comma, not "0.3 km"
    assert any(m.kind == "venue" for m in replies)


async def test_no_shop_across_the_archipelago_is_offered_as_nearest(app):
    """A family in Semarang is not sent to a shop hundreds of kilometres away: no e-Warong
    within 25 km, so it is told so and pointed to the village office."""
    user = await app.user("Wati")
    await user.send("/start")
    await user.press("e-Warong terdekat")
    replies = await user.share_location(-6.9932, 110.4203)  # Semarang, Central Java
    assert [m.kind for m in replies] == ["text"]
    assert "dalam radius 25 km" in replies[0].text
    assert "kantor desa" in replies[0].text


async def test_admin_invites_and_removes_an_agent_in_chat(app, sessionmaker):
    admin = await app.user("Admin")
    from services import accounts

    async with sessionmaker() as s, s.begin():
        await accounts.ensure_national_admins(s, [admin.id])
    assert "Cara pakai" in (await admin.send("/undang_agen"))[-1].text
    assert "Tidak ada e-Warong aktif" in (await admin.send("/undang_agen NOPE"))[-1].text
    reply = (await admin.send(f"/undang_agen {WARUNG['code']}"))[-1].text
    link = re.search(r"https://t.me/\w+\?start=(inv_[\w-]+)", reply)
    assert link, reply
    agent = await app.user("Agus")
    assert "sekarang agen" in (await agent.send(f"/start {link.group(1)}"))[-1].text
    reply = (await admin.send(f"/hapus_agen {agent.id} {WARUNG['code']}"))[-1].text
    assert reply == "Agen dihapus."
    assert "hanya untuk agen" in (await agent.send("Transaksi baru"))[-1].text


async def test_a_failed_receipt_message_cannot_undo_a_confirmed_purchase(
    app, sessionmaker, session
):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    await app.client.faults(429, count=1, retry_after=1, methods=["sendMessage"])
    await agent.press("Konfirmasi")
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 1
    status = (await kpm.press("Status bantuan"))[-1].text
    assert "Saldo saat ini: Rp340.000" in status


async def test_regional_admin_acts_only_inside_the_region(app, sessionmaker, session):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    await agent.press("Konfirmasi")
    await kpm.press("Bukan saya / laporkan")
    await kpm.press("Ya, laporkan")
    bali = await app.user("AdminBali")
    from models import AccountRole

    async with sessionmaker() as s, s.begin():
        from services import accounts

        account = await accounts.get_or_create(s, bali.id, "id")
        account.roles.append(AccountRole(telegram_id=bali.id, role="admin", scope="51"))
    assert "Tidak ada sengketa" in (await bali.send("/sengketa"))[-1].text
    redemption = await session.scalar(select(Redemption))
    await bali.callback((await bali.last()).message_id, f"adsp:reverse:{redemption.id}")
    assert (await bali.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    assert (
        "Tidak ada e-Warong aktif" in (await bali.send(f"/undang_agen {WARUNG['code']}"))[-1].text
    )


async def test_the_bot_ignores_group_chats(app):
    user = await app.user("Siti")
    update = {
        "message": {
            "message_id": 1, "date": 1779242400, "text": "/kode",
            "chat": {"id": -100123, "type": "supergroup", "title": "Warga RT 03"},
            "from": {"id": user.id, "is_bot": False, "first_name": "Siti"},
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        }
    }  # fmt: skip
    await app.client.inject(update)
    assert [e for e in await app.client.events() if e.get("chat_id") == -100123] == []
