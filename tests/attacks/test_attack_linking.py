"""Attacks on linking (issue 11, findings 1-4): taking over a family's account.

Each test is the attack, through the real bot over HTTP (and the real CLI where an
operator acts), and fails on the code before the fix.
"""

from __future__ import annotations

import os
import stat
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.factory import link_guard
from models import Account, ActivationCode, AuditEvent, ShoppingCode
from services.bpnt.codes import CODE_DIGITS
from tests.support.cli import activation_codes_in, cli
from tests.support.clock import NOW, install_clock
from tests.support.people import link_by_phone, link_with_activation
from tests.support.registry import BUDI, SITI, activation_code_for, load_registry


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    await load_registry(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    return bot_app


def birth_date_from_nik(nik: str) -> str:
    """What any stranger reads off a NIK: DDMMYY, +40 on the day for women."""
    day, month, year = int(nik[6:8]), nik[8:10], nik[10:12]
    return f"{day - 40 if day > 40 else day:02d}-{month}-19{year}"


async def linked_to(session, telegram_id: int) -> int | None:
    account = await session.get(Account, telegram_id, populate_existing=True)
    return account.beneficiary_id if account else None


# --- finding 1: the birth date is not a secret ------------------------------------------


async def test_finding_1_nik_and_derived_birth_date_no_longer_link_a_family_without_phone(
    app, session
):
    """Budi's registry row has no phone. Before: any stranger who knew his NIK shared their
    own phone, typed the birth date read off the NIK, and got his shopping codes."""
    stranger = await app.user("Stranger", phone_number="+6281399990000")
    reply = await link_by_phone(stranger, {**BUDI, "birth_date": birth_date_from_nik(BUDI["nik"])})
    assert "tidak cocok" in reply[-1].text
    assert "kode aktivasi" in reply[-1].text  # and says where a real family gets in
    assert await linked_to(session, stranger.id) is None
    await stranger.send("/batal")
    assert "belum terhubung" in (await stranger.send("/kode"))[-1].text


async def test_finding_1_the_activation_code_from_the_cli_links_the_real_family(
    app, session, settings
):
    result = await cli(settings, "activation", "issue", BUDI["nik"])
    assert result.exit_code == 0, result.output
    (code,) = activation_codes_in(result.output)
    assert BUDI["nik"] not in result.output and "************0001" in result.output
    async with app.ctx.sessionmaker() as fresh:
        stored = (await fresh.scalars(select(ActivationCode))).one()
        assert stored.code_hash != code and code.replace("-", "") not in stored.code_hash
        assert stored.expires_at - stored.created_at == timedelta(days=30)
    budi = await app.user("Budi")
    assert "Budi S***" in (await link_with_activation(budi, BUDI["nik"], code))[-1].text
    # single use: a second account with the same paper gets nowhere
    copycat = await app.user("Copycat")
    assert "tidak cocok" in (await link_with_activation(copycat, BUDI["nik"], code))[-1].text
    assert await linked_to(session, copycat.id) is None


async def test_finding_1_activation_codes_expire_after_30_days_and_a_new_one_voids_the_old(
    app, sessionmaker, session
):
    old = await activation_code_for(sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    new = await activation_code_for(sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    budi = await app.user("Budi")
    assert "tidak cocok" in (await link_with_activation(budi, BUDI["nik"], old))[-1].text
    app.clock.now = NOW + timedelta(days=30, minutes=1)
    assert "tidak cocok" in (await link_with_activation(budi, BUDI["nik"], new))[-1].text
    app.clock.now = NOW + timedelta(days=29)
    assert "Budi S***" in (await link_with_activation(budi, BUDI["nik"], new))[-1].text
    # another family's NIK with Budi's code is no match either
    assert await linked_to(session, budi.id) is not None


async def test_finding_1_a_code_is_bound_to_its_family(app, sessionmaker, session):
    budis = await activation_code_for(sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    thief = await app.user("Thief")
    assert "tidak cocok" in (await link_with_activation(thief, SITI["nik"], budis))[-1].text
    assert await linked_to(session, thief.id) is None


async def test_finding_1_bulk_issue_prints_a_list_and_is_all_or_nothing(
    app, settings, tmp_path, session
):
    good = tmp_path / "niks.csv"
    good.write_text(f"nik,catatan\n{BUDI['nik']},desa 1\n{SITI['nik']},desa 2\n", "utf-8")
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{BUDI['nik']}\n3273012304909999\n12345\n", "utf-8")

    refused = await cli(settings, "activation", "issue", "--file", str(bad))
    assert refused.exit_code == 1
    assert "2" in refused.output and "no family with this NIK" in refused.output
    assert "not a 16-digit NIK" in refused.output
    assert await session.scalar(select(func.count()).select_from(ActivationCode)) == 0

    listed = tmp_path / "daftar.csv"
    result = await cli(
        settings, "activation", "issue", "--file", str(good), "--output", str(listed)
    )
    assert result.exit_code == 0, result.output
    assert len(activation_codes_in(result.output)) == 2
    assert stat.S_IMODE(os.stat(listed).st_mode) == 0o600  # live codes: the owner's only
    rows = listed.read_text("utf-8").splitlines()
    assert rows[0] == "no,nik,name,village_code,activation_code,valid_until"
    assert len(rows) == 3 and "Budi S***" in rows[1] and "************0003" in rows[2]
    assert BUDI["nik"] not in listed.read_text("utf-8")


async def test_finding_1_no_activation_code_for_a_family_already_linked(app, settings):
    siti = await app.user("Siti")
    await link_by_phone(siti, SITI)
    result = await cli(settings, "activation", "issue", SITI["nik"])
    assert result.exit_code == 1 and "account unlink" in result.output
    assert activation_codes_in(result.output) == []


# --- finding 2: lockout per NIK, and a ceiling for everyone ------------------------------


async def test_finding_2_failures_count_per_nik_across_accounts(app, session):
    """Before: 15 failures from 3 accounts still left a 4th account 4 tries on the NIK."""
    wrong = {**SITI, "birth_date": "01-01-1980"}
    for name, tries in (("A", 2), ("B", 2), ("C", 1)):
        attacker = await app.user(name)
        await link_by_phone(attacker, wrong)
        for _ in range(tries - 1):
            await attacker.send(SITI["nik"])
            await attacker.send(wrong["birth_date"])
    fourth = await app.user("D")
    reply = (await link_by_phone(fourth, SITI))[-1].text  # even the right data
    assert "dikunci" in reply
    assert await linked_to(session, fourth.id) is None
    # another family is not affected by Siti's lock
    budi_code = await activation_code_for(app.ctx.sessionmaker, app.ctx.hasher, BUDI["nik"], NOW)
    assert "Budi S***" in (await link_with_activation(fourth, BUDI["nik"], budi_code))[-1].text


async def test_finding_2_a_flood_of_failed_links_pauses_linking_for_everyone(
    app, settings, session
):
    settings.link_failures_per_minute = 3
    app.ctx.link_guard = link_guard(app.ctx.store, settings)
    for n in range(3):  # three fresh accounts, three NIKs: no per-account or per-NIK lock
        attacker = await app.user(f"Flood{n}")
        nik = f"327301230490{n:04d}"
        await link_by_phone(attacker, {**BUDI, "nik": nik})
    siti = await app.user("Siti")
    await siti.send("/start")
    assert "dikunci" in (await siti.press("Hubungkan akun KPM"))[-1].text
    assert await linked_to(session, siti.id) is None


# --- finding 3: "already linked elsewhere" is an oracle -----------------------------------


async def test_finding_3_a_linked_family_reads_like_any_mismatch_and_its_account_is_told(
    app, session
):
    siti = await app.user("Siti")
    await link_by_phone(siti, SITI)
    # The attacker holds Siti's registered number (a recycled SIM) and knows her NIK.
    attacker = await app.user("Attacker")
    on_linked = (await link_by_phone(attacker, SITI))[-1].text
    nobody = await app.user("Nobody")
    on_wrong = (await link_by_phone(nobody, {**BUDI, "nik": "3273012304900099"}))[-1].text
    assert on_linked == on_wrong  # nothing tells the attacker that the NIK is a KPM's
    assert await linked_to(session, attacker.id) is None
    events = await session.scalars(
        select(AuditEvent.details).where(AuditEvent.action == "link.refused_linked_elsewhere")
    )
    assert [e["holder"] for e in events] == [siti.id]
    assert await app.deliver_notices() == 1
    assert "mencoba menghubungkan data KPM Anda ke akun Telegram lain" in (await siti.last()).text
    assert await app.deliver_notices() == 0  # once


# --- finding 4: unlink and re-link by an operator ----------------------------------------


async def test_finding_4_an_operator_unlinks_a_taken_over_family_which_links_again(
    app, settings, session
):
    attacker = await app.user("Attacker")
    await link_by_phone(attacker, SITI)  # with the family's own (stolen) SIM
    attackers_code = await shopping_code_of(attacker)
    result = await cli(
        settings, "account", "unlink", SITI["nik"], "--reason", "diambil alih orang lain",
        "--issue-code",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (code,) = activation_codes_in(result.output)
    assert SITI["nik"] not in result.output
    assert await linked_to(session, attacker.id) is None
    async with app.ctx.sessionmaker() as fresh:
        codes = list(await fresh.scalars(select(ShoppingCode)))
        assert [c.voided_at is not None for c in codes] == [True]  # the code on that phone
        unlinked = (
            await fresh.scalars(select(AuditEvent).where(AuditEvent.action == "account.unlinked"))
        ).one()
        assert unlinked.details["reason"] == "diambil alih orang lain"
        assert unlinked.details["account"] == attacker.id
    assert attackers_code
    assert "belum terhubung" in (await attacker.press("Status bantuan"))[-1].text
    assert await app.deliver_notices() == 1
    assert "memutus akun Telegram ini dari data KPM Anda" in (await attacker.last()).text

    siti = await app.user("Siti")
    assert "Siti A***" in (await link_with_activation(siti, SITI["nik"], code))[-1].text


async def test_finding_4_unlink_needs_a_reason_and_a_linked_family(app, settings):
    assert (await cli(settings, "account", "unlink", SITI["nik"])).exit_code == 2
    blank = await cli(settings, "account", "unlink", SITI["nik"], "--reason", "  ")
    assert blank.exit_code == 2 and "--reason" in blank.output
    nobody = await cli(settings, "account", "unlink", SITI["nik"], "--reason", "HP hilang")
    assert nobody.exit_code == 1 and "not linked" in nobody.output
    unknown = await cli(settings, "account", "unlink", "3204105507859999", "--reason", "x")
    assert unknown.exit_code == 1 and "No family" in unknown.output


async def shopping_code_of(user) -> str:
    reply = (await user.press("Kode belanja"))[-1].text
    digits = "".join(ch for ch in reply.split("\n")[0] if ch.isdigit())
    assert len(digits) == CODE_DIGITS, reply
    return digits
