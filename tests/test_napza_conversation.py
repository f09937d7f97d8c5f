"""Napza help requests end to end: requester questions, routing, partner staff, relay, SLA."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from models import HelpRequest, RelayMessage
from services import accounts
from services.napza.partners import import_partners
from tests.support.clock import NOW, install_clock
from tests.support.napza import PARTNERS_CSV, ask_for_help, napza_tick, staff, up_to_the_region


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    path = tmp_path / "partners.csv"
    path.write_text(PARTNERS_CSV, encoding="utf-8")
    report = await import_partners(sessionmaker, path)
    assert report.ok, report.errors
    install_clock(bot_app)
    return bot_app


async def test_emergency_numbers_come_before_any_question(app):
    user = await app.user("Rina")
    first = (await user.send("/napza"))[-1]
    assert "112" in first.text and "119" in first.text and "184" in first.text
    assert first.button_labels == ["Lanjutkan"]
    assert "jawab dengan tombol" in (await user.send("halo"))[-1].text


async def test_request_reaches_the_most_specific_partner_and_completes(app, sessionmaker):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    budi = await staff(app, sessionmaker, "IPWL-3204", "Budi")
    province = await staff(app, sessionmaker, "PKM-32", "Citra")
    requester = await app.user("Rina", username="rina_secret")
    ticket = await ask_for_help(requester, note="Anak saya butuh bantuan <segera>")

    offer = await ana.last()
    assert (
        ticket in offer.text and "Rawat jalan" in offer.text and "Kabupaten Bandung" in offer.text
    )
    assert "Anak saya butuh bantuan <segera>" in offer.text
    for leak in ("Rina", "rina_secret", str(requester.id)):
        assert leak not in offer.text
    assert ticket in (await budi.last()).text
    assert ticket not in " ".join(m.text for m in await province.messages())

    await ana.press("Terima")
    assert "Diambil oleh Ana" in (await budi.last()).text
    await budi.callback(
        (await budi.last()).message_id, f"prt:accept:{(await _request(sessionmaker, ticket)).id}"
    )
    answers = await budi.callback_answers()
    assert answers[-1]["text"] == "Rekan Anda sudah mengambil permintaan ini."
    told = await requester.last()
    assert "IPWL Rumah Sehat Bandung" in told.text and "+6281211112222" in told.text

    await requester.press("Chat dengan lembaga")
    assert [m.text for m in await requester.send("Kapan bisa datang?")] == ["Diteruskan."]
    assert await requester.send("Saya tunggu.") == []  # told once, not after every message
    assert "Saya tunggu." in (await ana.last()).text
    chat = await app.client.chat(requester.id)
    mine = [m for m in chat["messages"] if not m["from_bot"]]
    assert mine[-1]["text"] == "Saya tunggu." and mine[-1]["reactions"] == ["👍"]  # seen
    await requester.send("Kapan bisa datang?")
    relayed = await ana.last()
    assert "Pesan dari peminta bantuan" in relayed.text and "Kapan bisa datang?" in relayed.text
    assert "Rina" not in relayed.text
    await ana.press("Balas")
    await ana.send("Besok jam 9 di kantor kami.")
    assert "Besok jam 9" in (await requester.last()).text

    await ana.send("/batal")
    await ana.callback(
        (await ana.last()).message_id, f"prt:close:{(await _request(sessionmaker, ticket)).id}"
    )
    await ana.press("Dirujuk")
    assert "Lembaga telah menutup tiket" in (await requester.last()).text
    request = await _request(sessionmaker, ticket)
    assert request.status == "closed" and request.outcome == "dirujuk"
    assert request.note == "Anak saya butuh bantuan <segera>"

    # retention: 90 days after closing, the note and the relayed chat are gone
    app.clock.now = NOW + timedelta(days=89)
    await napza_tick(app, sessionmaker)
    assert (await _request(sessionmaker, ticket)).note is not None
    app.clock.now = NOW + timedelta(days=91)
    await napza_tick(app, sessionmaker)
    purged = await _request(sessionmaker, ticket)
    assert purged.note is None and purged.purged_at is not None
    async with sessionmaker() as session:
        left = await session.scalar(
            select(func.count())
            .select_from(RelayMessage)
            .where(RelayMessage.request_id == purged.id)
        )
    assert left == 0


async def _request(sessionmaker, ticket):
    async with sessionmaker() as session:
        return await session.scalar(select(HelpRequest).where(HelpRequest.ticket == ticket))


async def test_bad_answers_are_refused_politely(app, sessionmaker):
    partner = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    user = await app.user("Rina")
    await up_to_the_region(user, "Diri sendiri", "Di atas 40 tahun", "Konseling")
    assert "tidak ditemukan" in (await user.send("xyzxyz"))[-1].text
    assert "ketik nama kabupaten" in (await user.send_sticker())[-1].text
    await user.send("bandung")
    await user.press("Kabupaten Bandung")
    await user.press("Mendesak (hari ini)")
    assert "501 karakter" in (await user.send("a" * 501))[-1].text
    await user.send("Catatan singkat")
    replies = await user.press("Tidak, jangan kirim")
    assert "Tidak ada yang dikirim" in replies[-1].text
    assert all("NPZ-" not in m.text for m in await partner.messages())


async def test_decline_passes_to_the_next_partner(app, sessionmaker):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    citra = await staff(app, sessionmaker, "PKM-32", "Citra")
    ticket = await ask_for_help(await app.user("Rina"))
    await ana.press("Tolak")
    withdrawn = await ana.last()
    assert "diteruskan ke lembaga lain" in withdrawn.text and not withdrawn.inline_buttons
    assert ticket in (await citra.last()).text


async def test_unanswered_request_moves_on_then_escalates_to_admins(app, sessionmaker):
    await staff(app, sessionmaker, "IPWL-3204", "Ana")
    citra = await staff(app, sessionmaker, "PKM-32", "Citra")
    national = await staff(app, sessionmaker, "RS-NAS", "Dewi")
    admin = await app.user("Admin")
    async with sessionmaker() as session, session.begin():
        await accounts.ensure_national_admins(session, [admin.id])
    requester = await app.user("Rina")
    ticket = await ask_for_help(requester)

    app.clock.now = NOW + timedelta(hours=23)
    await napza_tick(app, sessionmaker)
    assert ticket not in " ".join(m.text for m in await citra.messages())
    for hours, who in ((25, citra), (50, national)):
        app.clock.now = NOW + timedelta(hours=hours)
        await napza_tick(app, sessionmaker)
        assert ticket in (await who.last()).text
    app.clock.now = NOW + timedelta(hours=75)
    await napza_tick(app, sessionmaker)
    await napza_tick(app, sessionmaker)  # a second pass must not escalate twice
    alerts = [m for m in await admin.messages() if ticket in m.text]
    assert len(alerts) == 1 and "Tidak ada lembaga mitra yang menjawab" in alerts[0].text
    assert "petugas sudah diberi tahu" in (await requester.last()).text

    # the way out of "escalated": the admin records what was arranged
    await admin.press("Dirujuk")
    assert "Lembaga telah menutup tiket" in (await requester.last()).text
    closed = await _request(sessionmaker, ticket)
    assert closed.status == "closed" and closed.outcome == "dirujuk" and closed.closed_at
    stranger = await app.user("NotAdmin")
    await stranger.callback(
        (await stranger.send("/start"))[-1].message_id, f"aout:{closed.id}:selesai"
    )
    assert (await stranger.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."


async def test_a_partner_cannot_open_another_partners_request(app, sessionmaker):
    await staff(app, sessionmaker, "IPWL-3204", "Ana")
    outsider = await staff(app, sessionmaker, "PKM-32", "Citra")
    ticket = await ask_for_help(await app.user("Rina"), note="rahasia")
    request = await _request(sessionmaker, ticket)
    own = (await outsider.last()).message_id
    for data in (
        *(f"prt:{action}:{request.id}" for action in ("accept", "reply", "close", "decline")),
        "prt:accept:99999999999999999999",  # forged, beyond any id
        f"out:{request.id}:selesai",
    ):
        await outsider.callback(own, data)
        assert (await outsider.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    assert all("rahasia" not in m.text for m in await outsider.messages())
    assert (await _request(sessionmaker, ticket)).status == "routing"


async def test_ticket_status_and_cancel(app, sessionmaker):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    requester = await app.user("Rina")
    ticket = await ask_for_help(requester)
    status = (await requester.send("/tiket"))[-1]
    assert ticket in status.text and "menunggu lembaga mitra" in status.text
    await requester.press("Batalkan permintaan ini")
    assert "dibatalkan" in (await requester.last()).text
    assert "membatalkan permintaan ini" in (await ana.last()).text
    assert "Anda tidak memiliki" not in (await requester.send(f"/tiket {ticket}"))[-1].text
    stranger = await app.user("Eko")
    assert "tidak memiliki permintaan" in (await stranger.send(f"/tiket {ticket}"))[-1].text


async def test_location_at_the_where_step_picks_the_regency(app, sessionmaker, tmp_path):
    from tests.support.shopping import shopping_world

    await shopping_world(sessionmaker, app.ctx.hasher, tmp_path)  # e-Warongs are the map
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    user = await app.user("Rina")
    await user.send("/napza")
    await user.press("Lanjutkan")
    await user.press("Diri sendiri")
    await user.press("Di bawah 18 tahun")
    await user.press("Informasi")
    replies = await user.share_location(-6.95, 107.55)  # Margaasih, Kab. Bandung
    assert any("Wilayah: Kabupaten Bandung" in m.text for m in replies)
    await user.press("Tidak mendesak")
    await user.press("Lewati")
    await user.press("Ya, kirim")
    assert "Kabupaten Bandung" in (await ana.last()).text


async def test_declined_partner_does_not_see_the_request_again(app, sessionmaker):
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    citra = await staff(app, sessionmaker, "PKM-32", "Citra")
    ticket = await ask_for_help(await app.user("Rina"), note="catatan-rahasia")
    await ana.press("Tolak")
    await citra.press("Terima")
    after = await ana.last()
    assert "catatan-rahasia" not in after.text and "Diambil" not in after.text
    assert ticket in after.text and "diteruskan ke lembaga lain" in after.text


async def test_napza_requests_leave_no_identity_or_note_in_the_logs(app, sessionmaker, caplog):
    import logging

    caplog.set_level(logging.INFO)  # the production level (DEBUG driver traces are off there)
    ana = await staff(app, sessionmaker, "IPWL-3204", "Ana")
    requester = await app.user("Rina")
    await ask_for_help(requester, note="pesan-sangat-rahasia")
    await ana.press("Terima")
    await requester.press("Chat dengan lembaga")
    await requester.send("isi-chat-rahasia")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "napza.created" in logged  # the events are logged
    for secret in (str(requester.id), "pesan-sangat-rahasia", "isi-chat-rahasia", "Rina"):
        assert secret not in logged, secret


async def test_a_single_region_match_is_asked_about_by_name(app):
    """ "sleman" finds one regency: the requester is asked "Maksud Anda Kabupaten Sleman?",
    not "Yang mana?" over a single button."""
    user = await app.user("Rina")
    await up_to_the_region(user)
    asked = (await user.send("sleman"))[-1]
    assert asked.text.startswith("Maksud Anda Kabupaten Sleman?"), asked.text
