"""KPM conversations through the real dispatcher, over HTTP, against the Bot API emulator."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from models import Account, AuditEvent
from tests.support.clock import NOW, install_clock
from tests.support.people import link_by_phone, link_with_activation
from tests.support.registry import BUDI, SITI, activation_code_for, load_registry


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    await load_registry(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    return bot_app


async def test_start_greets_unlinked_user_in_indonesian_with_link_offer(app):
    user = await app.user("Siti")
    replies = await user.send("/start")
    assert "Halo, Siti!" in replies[-1].text
    assert "Hubungkan akun KPM" in (await user.reply_keyboard() or [])


async def test_start_follows_telegram_language_when_supported(app):
    english = await app.user("Ann", language_code="en")
    assert "Hello, Ann!" in (await english.send("/start"))[-1].text
    assert "Link KPM account" in (await english.reply_keyboard() or [])
    french = await app.user("Jean", language_code="fr")
    assert "Halo, Jean!" in (await french.send("/start"))[-1].text


async def test_link_then_status_shows_pkh_and_bpnt_from_imported_data(app):
    user = await app.user("Siti")
    await user.send("/start")
    replies = await user.press("Hubungkan akun KPM")
    assert "Langkah 1 dari 3" in replies[-1].text
    replies = await user.share_contact(SITI["phone"])
    assert "Langkah 2 dari 3" in replies[-1].text
    replies = await user.send("3204 1055 0785 0003")  # spaces as people type them
    assert "Langkah 3 dari 3" in replies[-1].text
    replies = await user.send("15 Juli 1985")
    assert "Siti A***" in replies[-1].text
    assert "Status bantuan" in (await user.reply_keyboard() or [])

    status = (await user.press("Status bantuan"))[-1].text
    assert "************0003" in status and "3204105507850003" not in status
    assert "Anak SD × 2 — Rp1.800.000" in status
    assert "Lansia (60 tahun ke atas) × 1 — Rp2.400.000" in status
    assert "Total per tahun: Rp4.200.000" in status
    assert "Tahap 1: disalurkan ke rekening KKS — Rp1.050.000 (14 Maret 2026)" in status
    assert "Tahap 2: diproses di bank — Rp1.050.000" in status
    assert "Tahap 3: belum ada informasi" in status
    assert "Tahap berikutnya: Tahap 2" in status
    assert "Mei 2026: disalurkan ke rekening KKS — Rp200.000" in status
    assert "Saldo saat ini: Rp400.000" in status
    assert "• April 2026 — Penyaluran BPNT +Rp200.000" in status
    assert "• Mei 2026 — Penyaluran BPNT +Rp200.000" in status


async def test_status_in_english_after_choosing_language(app):
    user = await app.user("Siti")
    await link_by_phone(user)
    await user.send("/bahasa")
    replies = await user.press("English")
    assert any("Language: English" in r.text for r in replies)
    assert "From now on I will write in English." in replies[-1].text
    status = (await user.press("Aid status"))[-1].text
    assert "Primary-school child (SD) × 2 — Rp1,800,000" in status
    assert "Stage 1: credited to your KKS account — Rp1,050,000 (March 14, 2026)" in status
    assert "Current balance: Rp400,000" in status


async def test_family_without_registry_phone_links_with_an_activation_code(app, sessionmaker):
    code = await activation_code_for(sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    user = await app.user("Budi")
    await user.send("/start")
    replies = await user.press("Hubungkan akun KPM")
    assert "kode aktivasi" in replies[-1].text
    assert "Saya punya kode aktivasi" in (await user.reply_keyboard() or [])
    assert "Langkah 1 dari 2" in (await user.press("Saya punya kode aktivasi"))[-1].text
    assert "Langkah 2 dari 2" in (await user.send(BUDI["nik"]))[-1].text
    replies = await user.send(code.lower().replace("-", " "))  # as people type it
    assert "Budi S***" in replies[-1].text
    status = (await user.press("Status bantuan"))[-1].text
    assert "tidak terdaftar sebagai keluarga penerima PKH" in status
    assert "Mei 2026: diproses di bank — Rp200.000" in status
    assert "Saldo saat ini: Rp0" in status
    # single use: the same code links no second account
    other = await app.user("Budi2")
    reply = (await link_with_activation(other, BUDI["nik"], code))[-1].text
    assert "tidak cocok" in reply


@pytest.mark.parametrize("typed", ["ABC", "K7M2P-9QX4", "x" * 5000, "K7M2P-9QX4RR"])
async def test_malformed_activation_codes_get_a_hint_without_counting(app, sessionmaker, typed):
    code = await activation_code_for(sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    user = await app.user("Budi")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.press("Saya punya kode aktivasi")
    await user.send(BUDI["nik"])
    assert "10 huruf dan angka" in (await user.send(typed))[-1].text
    assert "ketik kode aktivasi sebagai teks" in (await user.send_sticker())[-1].text
    assert "Budi S***" in (await user.send(code))[-1].text


async def test_someone_elses_contact_is_refused(app):
    user = await app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    replies = await user.share_contact(SITI["phone"], own=False)
    assert "bukan kontak Anda sendiri" in replies[-1].text
    # still at step 1: typing the NIK now is not accepted
    replies = await user.send(SITI["nik"])
    assert "tekan <b>Bagikan nomor HP saya</b>" in replies[-1].html


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("123", "tepat 16 angka"),
        ("3204105507850003123", "tepat 16 angka"),
        ("abcdefghijklmnop", "tepat 16 angka"),
        ("9904105507850003", "tidak valid"),  # 99 is no province
        ("3204107207850003", "tidak valid"),  # day 72
        ("3204101513850003", "tidak valid"),  # month 13
        ("3204100007850003", "tidak valid"),  # day 00
        ("9" * 5000, "tepat 16 angka"),
    ],
)
async def test_wrong_nik_formats_get_a_hint_and_stay_at_step_2(app, typed, expected):
    user = await app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.share_contact(SITI["phone"])
    replies = await user.send(typed)
    assert expected in replies[-1].text
    replies = await user.send(SITI["nik"])  # the right one still works
    assert "Langkah 3 dari 3" in replies[-1].text


async def test_non_text_in_each_step_is_answered_politely(app):
    user = await app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    assert "Bagikan nomor HP saya" in (await user.send_sticker())[-1].text
    await user.share_contact(SITI["phone"])
    assert "ketik NIK 16 angka" in (await user.send_photo())[-1].text
    await user.send(SITI["nik"])
    assert "tanggal lahir Anda sebagai teks" in (await user.send_sticker())[-1].text
    assert "Siti A***" in (await user.send(SITI["birth_date"]))[-1].text


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("kemarin", "Tanggal tidak dapat dibaca"),
        ("31-02-1985", "tidak ada di kalender"),  # read: it does not exist
        ("15-07-2999", "tidak mungkin tanggal lahir"),
        ("x" * 5000, "Tanggal tidak dapat dibaca"),
    ],
)
async def test_bad_birth_dates_are_refused_without_counting_a_failure(app, typed, said):
    user = await app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.share_contact(SITI["phone"])
    await user.send(SITI["nik"])
    assert said in (await user.send(typed))[-1].text
    assert "Siti A***" in (await user.send("15/07/1985"))[-1].text


async def test_mismatch_never_says_which_field_was_wrong(app):
    wrong_nik = await app.user("A")
    wrong_date = await app.user("B")
    wrong_phone = await app.user("C")
    replies = [
        await link_by_phone(wrong_nik, {**SITI, "nik": "3204105507850004"}),
        await link_by_phone(wrong_date, {**SITI, "birth_date": "16-07-1985"}),
        await link_by_phone(wrong_phone, {**SITI, "phone": "081299998888"}),
    ]
    # The same words each time; only the attempts left differ, as Siti's NIK counts the
    # failures of every account that typed it (the NIK of wrong_nik is another one).
    texts = {re.sub(r"sisa \d percobaan", "sisa N percobaan", r[-1].text) for r in replies}
    assert len(texts) == 1
    (text,) = texts
    assert "tidak cocok" in text
    assert [re.search(r"sisa (\d) percobaan", r[-1].text).group(1) for r in replies] == [
        "4",
        "4",
        "3",
    ]


async def test_five_failures_lock_linking_for_an_hour(app, session):
    user = await app.user("Siti")
    bad = {**SITI, "birth_date": "01-01-1980"}
    await link_by_phone(user, bad)
    for left in (3, 2, 1):
        await user.send(SITI["nik"])
        reply = (await user.send(bad["birth_date"]))[-1].text
        assert f"sisa {left} percobaan" in reply
    await user.send(SITI["nik"])
    reply = (await user.send(bad["birth_date"]))[-1].text
    assert "dikunci selama 60 menit" in reply
    # even the right data is refused while locked
    replies = await user.press("Hubungkan akun KPM")
    assert "dikunci" in replies[-1].text
    account = await session.get(Account, user.id)
    assert account is not None and account.beneficiary_id is None


async def test_second_account_cannot_link_the_same_family_and_is_audited(app, session):
    first = await app.user("Siti")
    await link_by_phone(first)
    second = await app.user("Siti2")
    reply = (await link_by_phone(second))[-1].text
    # answered like any mismatch: "linked elsewhere" would tell a stranger the NIK is a KPM's
    assert "tidak cocok" in reply and "terhubung" not in reply
    refused = await session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "link.refused_linked_elsewhere")
    )
    assert refused == 1
    assert (await session.get(Account, second.id)).beneficiary_id is None
    assert await app.deliver_notices() == 1
    assert "mencoba menghubungkan data KPM Anda" in (await first.last()).text


async def test_cancel_leaves_any_step(app):
    user = await app.user("Siti")
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.share_contact(SITI["phone"])
    replies = await user.send("/batal")
    assert "Dibatalkan." in replies[-1].text
    replies = await user.send(SITI["nik"])  # no longer in the flow
    assert "tidak mengerti" in replies[-1].text
    assert "Tidak ada yang perlu dibatalkan" in (await user.send("/batal"))[-1].text


async def test_help_explains_each_menu_item(app):
    user = await app.user("Siti")
    text = (await user.send("/bantuan"))[-1].text
    for item in ("Hubungkan akun KPM", "Status bantuan", "Hapus data saya", "Bahasa"):
        assert item in text
    assert (await user.send("/help"))[-1].text == text


async def test_status_before_linking_points_to_linking(app):
    user = await app.user("Siti")
    assert "belum terhubung" in (await user.send("/status"))[-1].text


async def test_delete_my_data_unlinks_after_confirmation_and_ignores_replays(app, session):
    user = await app.user("Siti")
    await link_by_phone(user)
    await user.send("/bahasa")
    await user.press("Bahasa Indonesia")
    question = (await user.press("Hapus data saya"))[-1]
    assert "Hapus sekarang?" in question.text
    yes = question.button("Ya, hapus")["callback_data"]

    replies = await user.press("Ya, hapus")
    assert any("Data Anda telah dihapus" in r.text for r in replies)
    assert await session.get(Account, user.id) is None
    erased = await session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "account.erased")
    )
    assert erased == 1

    # pressing the same button again (a replay) changes nothing and says so
    replies = await user.callback(question.message_id, yes)
    answers = await user.callback_answers()
    assert answers[-1]["text"] == "Tombol ini sudah tidak berlaku."
    assert "belum terhubung" in (await user.send("/status"))[-1].text
    # registry stays: the family can link again
    assert "Siti A***" in (await link_by_phone(user))[-1].text


async def test_forged_erase_button_does_nothing(app, session):
    user = await app.user("Siti")
    await link_by_phone(user)
    question = (await user.press("Hapus data saya"))[-1]
    await user.callback(question.message_id, "erase:yes:forgedtoken")
    assert (await user.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    assert (await session.get(Account, user.id)).beneficiary_id is not None
    await user.callback(question.message_id, "lang:xx")
    assert (await user.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."
    await user.callback(question.message_id, "garbage")
    assert (await user.callback_answers())[-1]["text"] == "Tombol ini sudah tidak berlaku."


async def test_same_update_delivered_twice_is_handled_once(app):
    user = await app.user("Siti")
    await user.send("/start")
    update = {
        "update_id": 777,
        "message": {
            "message_id": 500,
            "date": 1779242400,
            "chat": {"id": user.id, "type": "private", "first_name": "Siti"},
            "from": {"id": user.id, "is_bot": False, "first_name": "Siti", "language_code": "id"},
            "text": "/bantuan",
            "entities": [{"type": "bot_command", "offset": 0, "length": 8}],
        },
    }
    before = len(await user.messages())
    await app.client.inject(update)
    await app.client.inject(update)
    assert len(await user.messages()) == before + 1


@pytest.mark.throttle(burst=8)
async def test_flooding_user_is_throttled_politely(app):
    user = await app.user("Siti")
    for _ in range(12):
        await user.send("halo")
    texts = [m.text for m in await user.messages()]
    assert sum("terlalu cepat" in t for t in texts) == 1
    assert len(texts) == 8 + 1


async def test_commands_menu_is_set_per_language(app):
    commands = await app.client.commands()
    rendered = repr(commands)
    assert "Status PKH dan BPNT saya" in rendered
    assert "My PKH and BPNT status" in rendered


async def test_berhenti_and_langganan_switch_announcements(app, session):
    user = await app.user("Siti")
    await user.send("/start")
    assert "tidak akan lagi menerima pengumuman" in (await user.send("/berhenti"))[-1].text
    assert (await session.get(Account, user.id)).broadcasts_off is True
    assert "/berhenti" in (await user.send("/langganan"))[-1].text
    await session.refresh(await session.get(Account, user.id))
    assert (await session.get(Account, user.id)).broadcasts_off is False
