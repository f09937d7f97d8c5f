"""Attacks on BPNT money (issue 11, findings 5-9): spending a family's balance.

Each test is the attack, through the real bot over HTTP where a person acts, and fails
on the code before the fix.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from sqlalchemy import func, select

from bot.factory import code_guard
from models import AuditEvent, BpntWallet, EWarong, LedgerEntry, Redemption
from services.bpnt import codes, counter, disputes, ledger
from services.bpnt import redemptions as sales
from services.bpnt.disputes import ReversalResult
from services.bpnt.redemptions import BasketLine, RedemptionDraft
from tests.support.clock import NOW, install_clock
from tests.support.people import linked_kpm, make_admin, make_agent
from tests.support.shopping import (
    OTHER_WARUNG,
    WARUNG,
    fill_basket,
    shopping_code,
    shopping_world,
)

SITI_KKS = "5264221234567890"
SITI_NIK_END = "0003"


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    bot_app.ids = await shopping_world(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    return bot_app


async def balance_of(sessionmaker, family: int) -> int:
    async with sessionmaker() as session:
        return (await ledger.wallet_state(session, family))[0]


async def redemptions(sessionmaker) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Redemption)) or 0)


async def pay_by_card(agent, kks=SITI_KKS, nik_end=SITI_NIK_END, total="50000"):
    """An agent's whole KKS-card sale; the replies of the last step."""
    await agent.press("Transaksi baru")
    await agent.send(kks)
    replies = await agent.send(nik_end)
    if not any(m.find_button("Pemegang kartu hadir") for m in replies):
        return replies
    await agent.press("Pemegang kartu hadir, KTP dicek")
    await agent.press("Masukkan total saja")
    await agent.send(total)
    return await agent.press("Konfirmasi")


# --- finding 5: a KKS number alone --------------------------------------------------------


async def test_finding_5_a_kks_number_alone_shows_and_debits_nothing(app, sessionmaker):
    """Before: any agent typed a family's KKS number and saw its name and balance, then
    debited it to zero, repeatedly, with no audit row and no lockout count."""
    agent, _ = await make_agent(app, sessionmaker)
    await agent.press("Transaksi baru")
    asked = (await agent.send(SITI_KKS))[-1].text
    assert "4 angka terakhir NIK" in asked and "Siti" not in asked and "Rp" not in asked
    wrong = (await agent.send("9999"))[-1].text
    assert "Tidak berlaku" in wrong and "Sisa 4 percobaan" in wrong and "Siti" not in wrong
    async with sessionmaker() as session:
        lookups = list(
            await session.scalars(
                select(AuditEvent).where(AuditEvent.action == "redemption.kks_lookup")
            )
        )
    assert [e.details["result"] for e in lookups] == ["invalid"]
    assert lookups[0].actor_telegram_id == agent.id and lookups[0].subject_id == WARUNG["code"]
    assert SITI_KKS not in str(lookups[0].details)
    assert await redemptions(sessionmaker) == 0


async def test_finding_5_a_family_on_telegram_cannot_be_charged_by_card(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    await linked_kpm(app)  # Siti uses the bot
    replies = await pay_by_card(agent)
    assert "memakai bot" in replies[-1].text and "Rp400.000" not in replies[-1].text
    assert await balance_of(sessionmaker, app.ids["siti"]) == 400_000
    # and it counted as a wrong try
    await agent.press("Transaksi baru")
    assert "Sisa 3 percobaan" in (await agent.send("100000000000"))[-1].text


async def test_finding_5_a_family_that_links_during_the_sale_is_not_charged(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    await agent.press("Transaksi baru")
    await agent.send(SITI_KKS)
    await agent.send(SITI_NIK_END)
    await agent.press("Pemegang kartu hadir, KTP dicek")
    await agent.press("Masukkan total saja")
    await agent.send("50000")
    await linked_kpm(app)  # now the family is on Telegram: cards alone are closed to it
    replies = await agent.press("Konfirmasi")
    assert any("tidak dapat membayar dengan kartu KKS" in m.text for m in replies)
    assert await balance_of(sessionmaker, app.ids["siti"]) == 400_000


async def test_finding_5_card_sales_are_capped_per_family_and_month(app, sessionmaker):
    app.ctx.settings.kks_redemptions_per_month = 1
    first, _ = await make_agent(app, sessionmaker, name="Agus")
    second, _ = await make_agent(app, sessionmaker, name="Dedi")
    # Both agents open a card sale before either confirms: the cap holds at confirm too.
    for agent in (first, second):
        await agent.press("Transaksi baru")
        await agent.send(SITI_KKS)
        await agent.send(SITI_NIK_END)
        await agent.press("Pemegang kartu hadir, KTP dicek")
        await agent.press("Masukkan total saja")
        await agent.send("50000")
    assert any("Struk #" in m.text for m in await first.press("Konfirmasi"))
    refused = await second.press("Konfirmasi")
    assert any("tidak dapat membayar dengan kartu KKS" in m.text for m in refused)
    assert await balance_of(sessionmaker, app.ids["siti"]) == 350_000
    # this month the card is spent; the lookup says so
    replies = await pay_by_card(first)
    assert "bulan ini sudah habis" in replies[-1].text
    async with sessionmaker() as session:
        wallet = await session.get(BpntWallet, app.ids["siti"])
        assert (wallet.kks_month, wallet.kks_count) == ("2026-05", 1)


async def test_finding_5_the_cap_holds_for_concurrent_confirmations(sessionmaker, app):
    """Eight agent-attested confirmations at once against a cap of 2: exactly 2 debit."""
    month = counter.kks_month(NOW, WARUNG["village_code"])

    async def confirm(n: int) -> sales.ConfirmResult:
        draft = RedemptionDraft(
            key=f"kks-{n}", ewarong_code=WARUNG["code"], agent_telegram_id=9000 + n,
            beneficiary_id=app.ids["siti"], lines=(BasketLine("beras", 1, 10_000),),
            agent_attested=True, kks_month=month, kks_cap=2,
        )  # fmt: skip
        async with sessionmaker() as session, session.begin():
            return (await sales.confirm(session, draft, NOW)).result

    results = await asyncio.gather(*(confirm(n) for n in range(8)), return_exceptions=True)
    confirmed = [r for r in results if r is sales.ConfirmResult.CONFIRMED]
    assert len(confirmed) == 2, results
    assert await balance_of(sessionmaker, app.ids["siti"]) == 380_000


# --- finding 6: codes valid everywhere, guessable in parallel ----------------------------


def test_finding_6_the_code_space_keeps_guessing_hopeless():
    """With 1,000,000 live codes, 1,000 guesses hit fewer than 0.01 codes on average."""
    expected_hits = 1_000 * 1_000_000 / 10**codes.CODE_DIGITS
    assert expected_hits < 0.01
    assert codes.CODE_DIGITS >= 12 and codes.CODE_DIGITS != counter.KKS_DIGITS
    assert math.isclose(expected_hits, 0.001)


async def test_finding_6_a_code_is_valid_only_in_the_familys_regency(app, sessionmaker):
    far, _ = await make_agent(app, sessionmaker, OTHER_WARUNG, name="Eko")  # Kota Bandung
    near, _ = await make_agent(app, sessionmaker, name="Agus")  # Kabupaten Bandung, Siti's
    kpm = await linked_kpm(app)
    code = await shopping_code(kpm)
    await far.press("Transaksi baru")
    reply = (await far.send(code))[-1].text
    assert "Tidak berlaku" in reply and "Siti" not in reply and "Sisa 4 percobaan" in reply
    await near.press("Transaksi baru")
    assert any("Siti A***" in m.text for m in await near.send(code))


async def test_finding_6_many_agents_of_one_ewarong_share_one_lockout(app, sessionmaker):
    """Before: 20 agents guessed 5 codes each (a lockout per agent only)."""
    app.ctx.settings.code_ewarong_max_failures = 6
    app.ctx.code_guard = code_guard(app.ctx.store, app.ctx.settings)
    agents = [(await make_agent(app, sessionmaker, name=f"Agen{n}"))[0] for n in range(3)]
    guesses = iter(range(100000000000, 100000000100))
    for agent in agents[:2]:
        await agent.press("Transaksi baru")
        for _ in range(3):
            await agent.send(str(next(guesses)))
    third = agents[2]  # has not typed anything wrong itself
    assert "dihentikan sementara" in (await third.press("Transaksi baru"))[-1].text
    other, _ = await make_agent(app, sessionmaker, OTHER_WARUNG, name="Eko")
    assert "Ketik <b>kode belanja</b>" in (await other.press("Transaksi baru"))[-1].html


async def test_finding_6_a_country_wide_ceiling_stops_a_spread_out_attack(app, sessionmaker):
    app.ctx.settings.code_failures_per_minute = 3
    app.ctx.code_guard = code_guard(app.ctx.store, app.ctx.settings)
    for n, warung in enumerate((WARUNG, OTHER_WARUNG, WARUNG)):
        agent, _ = await make_agent(app, sessionmaker, warung, name=f"Agen{n}")
        await agent.press("Transaksi baru")
        await agent.send(f"20000000000{n}")
    honest, _ = await make_agent(app, sessionmaker, OTHER_WARUNG, name="Honest")
    assert "dihentikan sementara" in (await honest.press("Transaksi baru"))[-1].text


# --- finding 7: reversing an undisputed sale ---------------------------------------------


async def test_finding_7_a_forged_reverse_button_cannot_reverse_an_undisputed_sale(
    app, sessionmaker
):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    admin = await make_admin(app, sessionmaker)
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    await agent.press("Konfirmasi")
    async with sessionmaker() as session:
        sale = (await session.scalars(select(Redemption))).one()
    await admin.send("/start")
    await admin.callback((await admin.last()).message_id, f"adsp:reverse:{sale.id}")
    assert "Hanya transaksi yang dilaporkan" in (await admin.callback_answers())[-1]["text"]
    assert "alasan pembatalan" not in (await admin.last()).text
    async with sessionmaker() as session, session.begin():  # and not around the button either
        result = await disputes.reverse(session, sale.id, admin=admin.id, reason="x", now=NOW)
    assert result is ReversalResult.NOT_DISPUTED
    assert await balance_of(sessionmaker, app.ids["siti"]) == 340_000
    async with sessionmaker() as session:
        kinds = list(await session.scalars(select(LedgerEntry.kind)))
    assert "redemption_reversal" not in kinds


async def test_finding_7_a_dispute_closed_while_the_reason_is_typed_stays_closed(app, sessionmaker):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    first = await make_admin(app, sessionmaker, "Admin1")
    second = await make_admin(app, sessionmaker, "Admin2")
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    await agent.press("Konfirmasi")
    await kpm.press("Bukan saya / laporkan")
    await kpm.press("Ya, laporkan")
    await first.press("Batalkan")  # "Reverse #n" on the alert: asks for the reason
    await second.press("Sah")  # meanwhile the other admin finds it genuine
    reply = (await first.send("saya kira palsu"))[-1].text
    assert "tidak sedang dilaporkan" in reply
    assert await app.deliver_notices() == 1  # told once, of the decision that stood
    assert "ditemukan sah" in (await kpm.last()).text
    assert await balance_of(sessionmaker, app.ids["siti"]) == 340_000


# --- finding 8: a deactivated e-Warong ----------------------------------------------------


async def test_finding_8_a_deactivated_ewarong_cannot_debit_even_with_a_basket_open(
    app, sessionmaker
):
    agent, _ = await make_agent(app, sessionmaker)
    kpm = await linked_kpm(app)
    admin = await make_admin(app, sessionmaker, scope="32.04")
    await fill_basket(agent, await shopping_code(kpm))
    await agent.press("Selesai")
    reply = (await admin.send(f"/nonaktif_ewarong {WARUNG['code']}"))[-1].text
    assert "dinonaktifkan" in reply
    replies = await agent.press("Konfirmasi")
    assert any("tidak aktif" in m.text for m in replies)
    assert await redemptions(sessionmaker) == 0
    assert await balance_of(sessionmaker, app.ids["siti"]) == 400_000
    assert "tidak aktif" in (await agent.press("Transaksi baru"))[-1].text
    assert await app.deliver_notices() == 1
    assert "telah dinonaktifkan" in (await agent.last()).text


async def test_finding_8_the_confirm_statement_itself_checks_the_ewarong(app, sessionmaker):
    async with sessionmaker() as session, session.begin():
        (await session.get(EWarong, WARUNG["code"])).active = False
    draft = RedemptionDraft(
        key="inactive", ewarong_code=WARUNG["code"], agent_telegram_id=1,
        beneficiary_id=app.ids["siti"], lines=(BasketLine("beras", 1, 1_000),),
        agent_attested=True, kks_month="2026-05", kks_cap=5,
    )  # fmt: skip
    async with sessionmaker() as session, session.begin():
        outcome = await sales.confirm(session, draft, NOW)
    assert outcome.result is sales.ConfirmResult.EWARONG_INACTIVE
    assert await balance_of(sessionmaker, app.ids["siti"]) == 400_000


# --- finding 9: dismissing dispute A while B is being opened ------------------------------


async def two_disputed_sales(sessionmaker, family: int) -> tuple[int, int]:
    ids = []
    for key in ("sale-a", "sale-b"):
        draft = RedemptionDraft(
            key=key, ewarong_code=WARUNG["code"], agent_telegram_id=1, beneficiary_id=family,
            lines=(BasketLine("beras", 1, 10_000),), agent_attested=True,
            kks_month="2026-05", kks_cap=5,
        )  # fmt: skip
        async with sessionmaker() as session, session.begin():
            ids.append((await sales.confirm(session, draft, NOW)).redemption.id)
    return ids[0], ids[1]


async def frozen(sessionmaker, family: int) -> bool:
    async with sessionmaker() as session:
        return (await ledger.wallet_state(session, family))[2]


async def test_finding_9_dismissing_one_dispute_keeps_the_family_frozen_while_another_is_open(
    app, sessionmaker
):
    family = app.ids["siti"]
    a, b = await two_disputed_sales(sessionmaker, family)
    for sale in (a, b):
        async with sessionmaker() as session, session.begin():
            await disputes.dispute(session, sale, family, 5, NOW)
    async with sessionmaker() as session, session.begin():
        assert await disputes.dismiss_dispute(session, a, admin=77, now=NOW)
    assert await frozen(sessionmaker, family)


async def test_finding_9_the_race_of_dismiss_and_a_new_dispute_keeps_the_freeze(
    app, sessionmaker, engine
):
    """PostgreSQL: the family disputes B (not yet committed) while an admin dismisses A.
    Before: the dismissal counted open disputes before B committed and unfroze."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time: the test above is its form of this")
    family = app.ids["siti"]
    a, b = await two_disputed_sales(sessionmaker, family)
    async with sessionmaker() as session, session.begin():
        await disputes.dispute(session, a, family, 5, NOW)
    async with sessionmaker() as disputing:
        await disputing.begin()
        assert await disputes.dispute(disputing, b, family, 5, NOW) is (
            disputes.DisputeResult.OPENED
        )

        async def dismiss() -> bool:
            async with sessionmaker() as session, session.begin():
                return await disputes.dismiss_dispute(session, a, admin=77, now=NOW)

        dismissing = asyncio.ensure_future(dismiss())
        await asyncio.sleep(0.5)  # the dismissal is waiting for the family's wallet now
        await disputing.commit()
    assert await dismissing
    assert await frozen(sessionmaker, family)
