"""Hostile strings in every free-text field and CSV cell: stored and shown literally.

SQL fragments, HTML tags and entities, and spreadsheet formula prefixes (`= + - @`,
tab, carriage return) go in through the chat (Napza note, relayed messages, reversal
reason, Telegram names) and through the imported CSV files (beneficiary, e-Warong and
partner names and addresses). The database holds them as typed; every message shows
them literally — the emulator parses HTML strictly, so a tag that was not escaped would
either be refused or be rendered, and both fail here —; every exported CSV cell that a
spreadsheet would run as a formula is prefixed with `'`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from infra.db import storable
from models import (
    AuditEvent,
    Beneficiary,
    EWarong,
    HelpRequest,
    PartnerOrganisation,
    Redemption,
    RelayMessage,
)
from services import accounts, invites
from services.bpnt import redemptions, reports
from services.bpnt.ewarongs import import_ewarongs
from services.imports.beneficiaries import import_beneficiaries
from services.imports.disbursements import import_disbursements
from services.napza.partners import import_partners
from tests.conftest import TEST_SECRET
from tests.support.clock import NOW, install_clock
from tg.callbacks import DisputeCB

SQL = "'; DROP TABLE beneficiaries;--"
FAMILY_NAME = f'=HYPERLINK("http://x") <b>Siti</b> &amp; {SQL}'
WARUNG_NAME = "@SUM(A1) <script>alert(1)</script> & 'Rejeki'; DROP TABLE ewarongs;--"
WARUNG_ADDRESS = '-1+1 <i>Jl.</i> "Raya" &lt;12&gt;'
PARTNER_NAME = "+IPWL <b>Harapan</b> & Co'; DELETE FROM partner_organisations;--"
STAFF_NAME = "<b>Ana</b> & =1+1"
REQUESTER_NAME = "</i><script>x</script>"
NOTE = f"{SQL} <b>tebal</b> <script>alert(1)</script> &amp; &lt; =1+1 +62 -1 @SUM(A1) \u202eRTL"
RELAYED = ("<b>Halo</b> & <i>", "=cmd|' /C calc'!A0", "'); DROP TABLE relay_messages;--")
REASON = "<b>Salah</b> &amp; input'; UPDATE bpnt_wallets SET balance=0;-- =1+1"

BENEFICIARIES = f"""\
nik,name,birth_date,phone,kks_number,village_code,programs,pkh_components
3204105507850003,"{FAMILY_NAME.replace('"', '""')}",1985-07-15,081234567890,5264221234567890,32.04.10.2001,PKH;BPNT,anak_sd:2
"""  # noqa: E501
DISBURSEMENTS = """\
nik,program,period,amount,status,date
3204105507850003,BPNT,2026-05,200000,disalurkan,2026-05-06
"""
EWARONGS = f"""\
code,name,village_code,address,latitude,longitude,bank
EW-3204-001,"{WARUNG_NAME.replace('"', '""')}",32.04.10.2001,"{WARUNG_ADDRESS.replace('"', '""')}",-6.95,107.55,BNI
"""  # noqa: E501
PARTNERS = f"""\
code,name,kind,region_codes,phone,services
IPWL-3204,"{PARTNER_NAME}",ipwl,32.04,081211112222,<b>konseling</b>;=rawat jalan
"""
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    files = {
        "beneficiaries.csv": BENEFICIARIES, "disbursements.csv": DISBURSEMENTS,
        "ewarongs.csv": EWARONGS, "partners.csv": PARTNERS,
    }  # fmt: skip
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    hasher = bot_app.ctx.hasher
    for report in (
        await import_beneficiaries(sessionmaker, tmp_path / "beneficiaries.csv", hasher),
        await import_disbursements(sessionmaker, tmp_path / "disbursements.csv", hasher),
        await import_ewarongs(sessionmaker, tmp_path / "ewarongs.csv"),
        await import_partners(sessionmaker, tmp_path / "partners.csv"),
    ):
        assert report.ok, report.errors
    install_clock(bot_app)
    await bot_app.client.set_limits(enabled=False)
    return bot_app


def shown_literally(message, value: str) -> None:
    """`value` is in the rendered text as typed, and no tag of it became formatting."""
    assert value in message.text, (value, message.text)
    if "<" in value or "&" in value:  # what the bot sent had it escaped
        assert value not in (message.html or ""), "markup went through unescaped"


def formula_safe(cell: str) -> bool:
    return not cell.startswith(FORMULA_START)


async def staff(app, sessionmaker, role: str, scope: str, name: str):
    async with sessionmaker() as session, session.begin():
        payload = await invites.create_invite(session, role, scope, created_by=None, now=NOW)
    member = await app.user(name)
    await member.send(f"/start {payload}")
    return member


async def test_imported_names_are_stored_and_shown_literally_and_exported_safely(
    app, sessionmaker, session, tmp_path, monkeypatch
):
    stored = await session.scalar(select(Beneficiary.name))
    assert stored == FAMILY_NAME  # as typed in the file: no escaping in the database
    warung = await session.get(EWarong, "EW-3204-001")
    assert (warung.name, warung.address) == (WARUNG_NAME, WARUNG_ADDRESS)
    partner = await session.get(PartnerOrganisation, "IPWL-3204")
    assert partner.name == PARTNER_NAME
    masked = '=HYPERLINK("http://x") <*** &*** \'*** D*** T*** b***'

    kpm = await app.user("Siti")
    await kpm.send("/start")
    await kpm.press("Hubungkan akun KPM")
    await kpm.share_contact("081234567890")
    await kpm.send("3204105507850003")
    shown_literally((await kpm.send("15-07-1985"))[-1], masked)
    shown_literally((await kpm.send("/start"))[-1], masked)

    replies = await kpm.press("e-Warong terdekat")
    replies = await kpm.share_location(-6.95, 107.55)
    nearest = next(m for m in replies if m.kind == "text" and "km" in m.text)
    shown_literally(nearest, WARUNG_NAME)
    shown_literally(nearest, WARUNG_ADDRESS)
    venue = next(m for m in replies if m.kind == "venue")
    assert venue.venue["title"] == WARUNG_NAME and venue.venue["address"] == WARUNG_ADDRESS

    agent = await staff(app, sessionmaker, "agent", "EW-3204-001", STAFF_NAME)
    code = re.search(
        r"<b>(\d{4} \d{4} \d{4})</b>", (await kpm.press("Kode belanja"))[-1].html
    ).group(1)
    await agent.press("Transaksi baru")
    counter = await agent.send(code)
    assert any(masked in m.text for m in counter)
    shown_literally(next(m for m in counter if masked in m.text), masked)
    await agent.press("Beras")
    await agent.send("2 x 15000")
    summary = (await agent.press("Selesai"))[-1]
    shown_literally(summary, WARUNG_NAME)
    receipt = (await agent.press("Konfirmasi"))[0]
    shown_literally(receipt, WARUNG_NAME)
    family_receipt = await kpm.last()
    shown_literally(family_receipt, WARUNG_NAME)

    # the day's CSV, in chat and from the command line: formulas neutralised, text literal
    document = (await agent.press("Ekspor CSV"))[-1]
    in_chat = (await app.client.file(document.document["file_id"])).decode()
    monkeypatch.setenv("DATABASE_URL", str(app.ctx.settings.database_url))
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET)
    out = tmp_path / "export.csv"
    result = await asyncio.to_thread(
        CliRunner().invoke,
        __import__("bot.cli", fromlist=["app"]).app,
        ["export", "redemptions", "--ewarong", "EW-3204-001", "--date", "2026-05-20",
         "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from_cli = out.read_text(encoding="utf-8")
    assert from_cli == in_chat
    rows = list(csv.reader(io.StringIO(in_chat)))
    header, row = rows[0], rows[1]
    cells = dict(zip(header, row, strict=True))
    assert cells["ewarong_name"] == "'" + WARUNG_NAME
    assert cells["family"] == "'" + masked
    assert all(formula_safe(cell) for line in rows for cell in line)

    # a dispute: the admin's alert and list show the e-Warong's name literally
    admin = await app.user("Admin")
    async with sessionmaker() as s, s.begin():
        await accounts.ensure_national_admins(s, [admin.id])
    await kpm.press("Bukan saya / laporkan")
    await kpm.press("Ya, laporkan")
    shown_literally(await admin.last(), WARUNG_NAME)
    listed = (await admin.send("/sengketa"))[-1]
    shown_literally(listed, WARUNG_NAME)
    await admin.press(listed.button_labels[0])
    done = (await admin.send(REASON))[-1]
    assert "dana sudah kembali" in done.text
    async with sessionmaker() as s:
        redemption = await s.scalar(select(Redemption))
        assert redemption.reversal_reason == REASON  # one line already: stored as typed
        details = await s.scalar(
            select(AuditEvent.details).where(AuditEvent.action == "redemption.reversed")
        )
        assert details["reason"] == REASON

    # the export after the reversal still reconciles and stays formula-safe
    document = (await agent.press("Ekspor CSV"))[-1]
    rows = list(
        csv.reader(io.StringIO((await app.client.file(document.document["file_id"])).decode()))
    )
    assert rows[1][header.index("status")] == "reversed"
    assert all(formula_safe(cell) for line in rows for cell in line)


async def test_free_text_typed_in_chat_is_stored_and_relayed_literally(app, sessionmaker):
    ana = await staff(app, sessionmaker, "partner", "IPWL-3204", STAFF_NAME)
    colleague = await staff(app, sessionmaker, "partner", "IPWL-3204", "Budi")
    requester = await app.user(REQUESTER_NAME)
    shown_literally((await requester.send("/start"))[-1], REQUESTER_NAME)
    await requester.send("/napza")
    await requester.press("Lanjutkan")
    await requester.press("Anggota keluarga")
    await requester.press("18–25 tahun")
    await requester.press("Rawat jalan")
    await requester.send("bandung")
    await requester.press("Kabupaten Bandung")
    await requester.press("Tidak mendesak")
    await requester.send(NOTE)
    await requester.press("Ya, kirim")

    offer = await ana.last()
    shown_literally(offer, NOTE)
    async with sessionmaker() as session:
        request = await session.scalar(select(HelpRequest))
        assert request.note == NOTE

    await ana.press("Terima")
    shown_literally(await colleague.last(), STAFF_NAME)  # "Taken by <name>"
    accepted = await requester.last()
    shown_literally(accepted, PARTNER_NAME)

    await requester.press("Chat dengan lembaga")
    for text in RELAYED:
        await requester.send(text)
        shown_literally(await ana.last(), text)
    await ana.press("Balas")
    await ana.send(RELAYED[0])
    shown_literally(await requester.last(), RELAYED[0])
    async with sessionmaker() as session:
        relayed = list(await session.scalars(select(RelayMessage.text).order_by(RelayMessage.id)))
    assert relayed == [*RELAYED, RELAYED[0]]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"), ("+62812", "'+62812"), ("-5", "'-5"), ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=cmd", "'\t=cmd"), ("\r=cmd", "'\r=cmd"), ("Siti A***", "Siti A***"),
        ("<b>x</b>", "<b>x</b>"), ("", ""), (None, ""), (120000, "120000"), (-1, "'-1"),
        ("'already quoted", "'already quoted"),
    ],
)  # fmt: skip
def test_csv_cells_never_start_a_formula(value, expected) -> None:
    assert reports.csv_cell(value) == expected


@pytest.mark.parametrize("typed", ["²", "¹²³", "2 x ²", "²³ x 1000", "1e5", "Ⅻ"])
def test_digits_that_int_refuses_are_not_amounts(typed: str) -> None:
    # str.isdigit() is true for superscripts, which int() refuses: found by the fuzzer.
    assert redemptions.parse_amount(typed) is None
    assert redemptions.parse_line("beras", typed) is None
    assert redemptions.parse_amount("５０００") == 5000  # other decimal digits still count


@pytest.mark.parametrize("data", ["dsp:99999999999999999999", "dsp:0", "dsp:-1", "dsp:²"])
def test_forged_row_ids_never_parse(data: str) -> None:
    # Beyond BIGINT, SQLite raises OverflowError and PostgreSQL a DataError: found by the
    # fuzzer. The filter refuses such data, so the press is "no longer valid".
    with pytest.raises(ValueError):
        DisputeCB.unpack(data)
    assert DisputeCB.unpack(f"dsp:{2**63 - 1}").redemption == 2**63 - 1


def test_nul_is_the_only_character_dropped_before_storing() -> None:
    assert storable("a\x00b<b>&amp;\u202e'; --") == "ab<b>&amp;\u202e'; --"
