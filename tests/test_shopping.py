"""Shopping codes, redemptions, disputes and reversals at the service level."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from models import Beneficiary, BpntWallet, EWarong, LedgerEntry, Redemption
from services.bpnt import codes, counter, disputes, ledger, redemptions, reports
from services.bpnt.counter import LookupResult
from services.bpnt.redemptions import BasketLine, ConfirmResult, RedemptionDraft
from services.identity import Hasher
from tests.conftest import TEST_SECRET
from tests.support.clock import NOW
from tests.support.shopping import WARUNG, shopping_world

HASHER = Hasher(TEST_SECRET.encode())


@pytest.fixture
async def world(sessionmaker, tmp_path):
    return await shopping_world(sessionmaker, HASHER, tmp_path)


async def warung(session) -> EWarong:
    found = await session.get(EWarong, WARUNG["code"])
    assert found is not None
    return found


def draft(
    family: int, total: int, *, key: str = "k1", code_id: int | None = None
) -> RedemptionDraft:
    return RedemptionDraft(
        key=key, ewarong_code=WARUNG["code"], agent_telegram_id=9001, beneficiary_id=family,
        lines=(BasketLine("beras", 1, total),), shopping_code_id=code_id,
    )  # fmt: skip


async def test_code_finds_the_family_once_and_a_new_code_voids_the_old(session, world):
    siti = await session.get(Beneficiary, world["siti"])
    first = await codes.issue_code(session, siti, HASHER, NOW)
    second = await codes.issue_code(session, siti, HASHER, NOW)
    assert first.code != second.code or first.code is not None
    assert (
        await counter.find_by_code(session, first.code, HASHER, NOW, await warung(session))
    ).result in (
        LookupResult.INVALID,
        LookupResult.FOUND,  # the same 12 digits drawn twice: the new code
    )
    found = await counter.find_by_code(session, second.code, HASHER, NOW, await warung(session))
    assert found.result is LookupResult.FOUND
    assert found.masked_name == "Siti A***" and found.balance == 400_000
    later = NOW + codes.CODE_TTL + timedelta(seconds=1)
    assert (
        await counter.find_by_code(session, second.code, HASHER, later, await warung(session))
    ).result is (LookupResult.INVALID)


async def test_confirm_debits_once_per_key_and_consumes_the_code(session, world):
    siti = await session.get(Beneficiary, world["siti"])
    issued = await codes.issue_code(session, siti, HASHER, NOW)
    found = await counter.find_by_code(session, issued.code, HASHER, NOW, await warung(session))
    outcome = await redemptions.confirm(
        session, draft(siti.id, 150_000, code_id=found.shopping_code_id), NOW
    )
    assert outcome.result is ConfirmResult.CONFIRMED
    assert outcome.redemption.balance_after == 250_000
    again = await redemptions.confirm(
        session, draft(siti.id, 150_000, code_id=found.shopping_code_id), NOW
    )
    assert again.result is ConfirmResult.ALREADY_CONFIRMED
    other_agent = await redemptions.confirm(
        session, draft(siti.id, 150_000, key="k2", code_id=found.shopping_code_id), NOW
    )
    assert other_agent.result is ConfirmResult.ALREADY_CONFIRMED
    assert (await ledger.wallet_state(session, siti.id))[0] == 250_000
    assert (
        await counter.find_by_code(session, issued.code, HASHER, NOW, await warung(session))
    ).result is (LookupResult.INVALID)


async def test_confirm_cannot_overdraw(session, world):
    outcome = await redemptions.confirm(session, draft(world["siti"], 400_001), NOW)
    assert outcome.result is ConfirmResult.INSUFFICIENT
    assert (await ledger.wallet_state(session, world["siti"]))[0] == 400_000
    assert await session.scalar(select(func.count()).select_from(Redemption)) == 0


async def test_locked_family_gets_nothing_through(session, world):
    siti = await session.get(Beneficiary, world["siti"])
    await ledger.set_family_lock(session, siti.id, True, actor=1)
    assert (await codes.issue_code(session, siti, HASHER, NOW)).result is (
        codes.CodeResult.NOT_PROCESSABLE
    )
    by_card = await counter.find_by_kks(
        session, HASHER.kks("5264221234567890"), "0003", await warung(session), agent=9001,
        now=NOW, monthly_cap=2,
    )  # fmt: skip
    assert by_card.result is LookupResult.NOT_PROCESSABLE
    assert (await redemptions.confirm(session, draft(siti.id, 1000), NOW)).result is (
        ConfirmResult.NOT_PROCESSABLE
    )
    await ledger.set_family_lock(session, siti.id, False, actor=1)
    assert (await redemptions.confirm(session, draft(siti.id, 1000), NOW)).result is (
        ConfirmResult.CONFIRMED
    )


async def test_dispute_freezes_then_reversal_refunds_as_a_new_entry(session, world):
    siti = world["siti"]
    redemption = (await redemptions.confirm(session, draft(siti, 100_000), NOW)).redemption
    assert await disputes.dispute(session, redemption.id, world["budi"], 5, NOW) is (
        disputes.DisputeResult.NOT_YOURS
    )
    assert await disputes.dispute(session, redemption.id, siti, 5, NOW) is (
        disputes.DisputeResult.OPENED
    )
    assert (await ledger.wallet_state(session, siti))[2] is True
    assert (await redemptions.confirm(session, draft(siti, 1000, key="k9"), NOW)).result is (
        ConfirmResult.NOT_PROCESSABLE
    )
    assert await disputes.reverse(session, redemption.id, admin=77, reason=" ", now=NOW) is (
        disputes.ReversalResult.NO_REASON
    )
    result = await disputes.reverse(
        session, redemption.id, admin=77, reason="kartu hilang", now=NOW
    )
    assert result is disputes.ReversalResult.REVERSED
    assert await disputes.reverse(session, redemption.id, admin=77, reason="x", now=NOW) is (
        disputes.ReversalResult.ALREADY
    )
    balance, _, frozen = await ledger.wallet_state(session, siti)
    assert balance == 400_000 and frozen is False
    kinds = [e.kind for e in await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id))]
    assert kinds[-2:] == ["redemption", "redemption_reversal"]


@pytest.mark.parametrize(
    ("typed", "line"),
    [
        ("15000", BasketLine("telur", 1, 15_000)),
        ("Rp15.000", BasketLine("telur", 1, 15_000)),
        ("2 x 15000", BasketLine("telur", 2, 15_000)),
        ("3×12.500", BasketLine("telur", 3, 12_500)),
        ("0", None),
        ("-5000", None),
        ("lima ribu", None),
        ("2 x 0", None),
        ("0 x 1000", None),
        ("99999999999", None),
        ("", None),
    ],
)
def test_agents_type_amounts_the_way_they_say_them(typed, line):
    assert redemptions.parse_line("telur", typed) == line


def test_csv_cells_never_start_a_formula():
    assert reports.csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert reports.csv_cell("+62") == "'+62"
    assert reports.csv_cell("@x") == "'@x"
    assert reports.csv_cell("Warung") == "Warung"


async def test_wallet_never_negative_in_the_database(session, world):
    wallet = await session.get(BpntWallet, world["siti"])
    assert wallet.balance == 400_000


async def test_a_rolled_back_confirmation_leaves_no_trace(sessionmaker, world):
    async with sessionmaker() as session:
        async with session.begin():
            outcome = await redemptions.confirm(session, draft(world["siti"], 1_000, key="rb"), NOW)
            assert outcome.result is ConfirmResult.CONFIRMED
            await session.rollback()  # the handler failed after confirming
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Redemption)) == 0
        assert (await ledger.wallet_state(session, world["siti"]))[0] == 400_000


async def test_a_reversed_transaction_cannot_be_disputed_into_a_freeze(session, world):
    siti = world["siti"]
    redemption = (await redemptions.confirm(session, draft(siti, 5_000), NOW)).redemption
    await disputes.dispute(session, redemption.id, siti, 5, NOW)
    await disputes.reverse(session, redemption.id, admin=1, reason="salah input", now=NOW)
    assert await disputes.dispute(session, redemption.id, siti, 5, NOW) is (
        disputes.DisputeResult.ALREADY
    )
    assert (await ledger.wallet_state(session, siti))[2] is False
