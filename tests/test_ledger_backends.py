"""One story of BPNT money, written on SQLite and on PostgreSQL: the same rows.

The ledger module takes different paths on the two databases (PostgreSQL confirms a
redemption in one statement of data-modifying CTEs, SQLite one statement per step;
bulk credits lock wallets only on PostgreSQL). The story below goes through every
writer of `services.bpnt.ledger`: bulk credit, a credit synced alone, a redemption by
code, the same press again, a redemption by KKS card and its duplicate (a debit undone),
a dispute and its reversal, a dispute dismissed, the family's lock, a credit reversed
short (money already spent) and credited again. Wallet, ledger and redemption rows must
come out identical, and equal to the expected rows written out here.

The SQLite story always runs (on its own fresh database). The comparison needs
PostgreSQL (TEST_DATABASE_URL, as in CI): it is skipped only when that is unset, and
fails instead under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker
from models import Beneficiary, BpntWallet, Disbursement, EWarong, LedgerEntry, Redemption
from models.enums import DisbursementStatus, LedgerKind, Program
from services.bpnt import codes, counter, disputes, ledger, redemptions
from services.bpnt.redemptions import BasketLine, ConfirmResult, RedemptionDraft
from services.identity import Hasher
from services.imports.beneficiaries import BENEFICIARY_COLUMNS, import_beneficiary_records
from services.imports.csvfile import parse_csv_text
from tests.conftest import TEST_SECRET
from tests.support.clock import NOW
from tests.support.registry import BENEFICIARIES
from tests.support.servers import migrate
from tests.support.shopping import WARUNG

HASHER = Hasher(TEST_SECRET.encode())
AGENT = 9001
ADMIN = 77
REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.fixture
async def sqlite_sessionmaker(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A fresh, migrated SQLite database of this test's own (whatever the suite runs on)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'story.db'}"
    await migrate(url)
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _draft(family: int, total: int, key: str, **kwargs: Any) -> RedemptionDraft:
    return RedemptionDraft(
        key=key, ewarong_code=WARUNG["code"], agent_telegram_id=AGENT, beneficiary_id=family,
        lines=(BasketLine("beras", 1, total),), **kwargs,
    )  # fmt: skip


async def story(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    """Write the story on this (empty) database; its wallet, ledger and redemption rows."""
    records, errors = parse_csv_text(BENEFICIARIES, BENEFICIARY_COLUMNS)
    assert not errors
    assert (await import_beneficiary_records(sessionmaker, records, HASHER)).ok
    async with sessionmaker() as session, session.begin():
        ids = {
            name.split()[0].lower(): id_
            for name, id_ in await session.execute(select(Beneficiary.name, Beneficiary.id))
        }
        siti, budi = ids["siti"], ids["budi"]
        session.add(EWarong(**WARUNG))
        months = {
            "siti-04": Disbursement(beneficiary_id=siti, program=Program.BPNT, period="2026-04",
                                    amount=200_000, status=DisbursementStatus.DISALURKAN,
                                    date=NOW.date()),
            "siti-05": Disbursement(beneficiary_id=siti, program=Program.BPNT, period="2026-05",
                                    amount=200_000, status=DisbursementStatus.DISALURKAN,
                                    date=NOW.date()),
            "budi-05": Disbursement(beneficiary_id=budi, program=Program.BPNT, period="2026-05",
                                    amount=200_000, status=DisbursementStatus.DISALURKAN,
                                    date=NOW.date()),
        }  # fmt: skip
        session.add_all(months.values())
    ids_of = {name: row.id for name, row in months.items()}

    # Credits: two new disbursements in bulk (as an import does), one synced alone.
    async with sessionmaker() as session, session.begin():
        table = Disbursement.__table__
        bulk = (
            select(table.c.id, table.c.beneficiary_id, table.c.amount, table.c.period)
            .where(table.c.id.in_([ids_of["siti-04"], ids_of["budi-05"]]))
            .subquery()
        )
        await ledger.bulk_credit(await session.connection(), bulk, NOW)
    async with sessionmaker() as session, session.begin():
        row = await session.get(Disbursement, ids_of["siti-05"])
        assert row is not None
        await ledger.sync_disbursement_credit(session, row)
        await ledger.sync_disbursement_credit(session, row)  # twice: nothing more

    # A redemption by shopping code, then the same press again.
    async with sessionmaker() as session, session.begin():
        beneficiary = await session.get(Beneficiary, siti)
        ewarong = await session.get(EWarong, WARUNG["code"])
        assert beneficiary is not None and ewarong is not None
        issued = await codes.issue_code(session, beneficiary, HASHER, NOW)
        assert issued.code is not None
        found = await counter.find_by_code(session, issued.code, HASHER, NOW, ewarong)
    by_code = _draft(siti, 150_000, "key-code", shopping_code_id=found.shopping_code_id)
    for expected in (ConfirmResult.CONFIRMED, ConfirmResult.ALREADY_CONFIRMED):
        async with sessionmaker() as session, session.begin():
            assert (await redemptions.confirm(session, by_code, NOW)).result is expected

    # By KKS card (attested, counted in the month), then a duplicate of the same key: its
    # debit runs and is undone, the count too.
    by_card = _draft(budi, 50_000, "key-card", agent_attested=True, kks_month="2026-05", kks_cap=2)
    for expected in (ConfirmResult.CONFIRMED, ConfirmResult.ALREADY_CONFIRMED):
        async with sessionmaker() as session, session.begin():
            assert (await redemptions.confirm(session, by_card, NOW)).result is expected

    # "Not me" on the code sale: frozen; the admin reverses it: refunded, unfrozen.
    async with sessionmaker() as session, session.begin():
        sale = await redemptions.redemption_by_key(session, "key-code")
        assert sale is not None
        assert await disputes.dispute(session, sale.id, siti, 5, NOW) is (
            disputes.DisputeResult.OPENED
        )
    async with sessionmaker() as session, session.begin():
        result = await disputes.reverse(session, sale.id, admin=ADMIN, reason="not her", now=NOW)
        assert result is disputes.ReversalResult.REVERSED

    # Another sale, disputed and found genuine.
    later = NOW + timedelta(minutes=5)
    async with sessionmaker() as session, session.begin():
        outcome = await redemptions.confirm(session, _draft(siti, 20_000, "key-plain"), later)
        assert outcome.result is ConfirmResult.CONFIRMED and outcome.redemption is not None
        plain = outcome.redemption.id
    async with sessionmaker() as session, session.begin():
        await disputes.dispute(session, plain, siti, 5, later)
    async with sessionmaker() as session, session.begin():
        assert await disputes.dismiss_dispute(session, plain, admin=ADMIN, now=later)

    # The family locks shopping: nothing goes through; unlocked, then locked again.
    async with sessionmaker() as session, session.begin():
        assert await ledger.set_family_lock(session, siti, True, actor=5)
    async with sessionmaker() as session, session.begin():
        refused = await redemptions.confirm(session, _draft(siti, 1_000, "key-locked"), later)
        assert refused.result is ConfirmResult.NOT_PROCESSABLE
    async with sessionmaker() as session, session.begin():
        assert await ledger.set_family_lock(session, siti, False, actor=5)
        assert await ledger.set_family_lock(session, siti, True, actor=5)

    # Budi's month fails after he spent 50.000: reversed short; then paid after all.
    for status in (DisbursementStatus.GAGAL, DisbursementStatus.DISALURKAN):
        async with sessionmaker() as session, session.begin():
            row = await session.get(Disbursement, ids_of["budi-05"])
            assert row is not None
            row.status = status
            await session.flush()
            await ledger.sync_disbursement_credit(session, row)
    return await snapshot(sessionmaker)


def _symbolic_key(
    key: str, disbursement: int | None, sale: int | None, names: dict[int, str]
) -> str:
    """An idempotency key with row ids replaced by `names` (ids may differ between two
    databases); checks on the way that the id in the key is the entry's own."""
    if match := re.fullmatch(r"(bpnt-credit|bpnt-credit-reversal):(\d+)(:\d+)?", key):
        assert int(match[2]) == disbursement, key
        assert key == (
            ledger.credit_key(disbursement, int(match[3][1:]) if match[3] else 1)
            if match[1] == "bpnt-credit"
            else ledger.credit_reversal_key(disbursement, int(match[3][1:]))
        )
        return f"{match[1]}:{names[disbursement]}{match[3] or ''}"
    if match := re.fullmatch(r"redemption-reversal:(\d+)", key):
        assert sale is not None and key == ledger.reversal_key(sale), key
        return f"redemption-reversal:{names[sale]}"
    assert sale is not None and key == ledger.redemption_key(names[sale]), key
    return key


async def snapshot(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    """Every wallet, ledger and redemption row, with ids replaced by names and keys."""
    async with sessionmaker() as session:
        families = {
            id_: name.split()[0].lower()
            for id_, name in await session.execute(select(Beneficiary.id, Beneficiary.name))
        }
        months = {
            id_: f"{families[family]}-{period}"
            for id_, family, period in await session.execute(
                select(Disbursement.id, Disbursement.beneficiary_id, Disbursement.period)
            )
        }
        sales = list(await session.scalars(select(Redemption).order_by(Redemption.id)))
        sale_keys = {sale.id: sale.idempotency_key for sale in sales}
        wallets = {
            families[w.beneficiary_id]: (w.balance, w.locked, w.frozen, w.kks_month, w.kks_count)
            for w in await session.scalars(select(BpntWallet))
        }
        # Per family, in the order written (rows of different families interleave by
        # beneficiary id, which the two databases need not hand out alike).
        entries: dict[str, list[tuple[Any, ...]]] = {family: [] for family in wallets}
        for e in await session.scalars(select(LedgerEntry).order_by(LedgerEntry.id)):
            names = months if e.disbursement_id else sale_keys
            key = _symbolic_key(e.idempotency_key, e.disbursement_id, e.redemption_id, names)
            entries[families[e.beneficiary_id]].append(
                (e.kind, e.amount, e.balance_after, key, e.reference)
            )
        redeemed = [
            (
                s.idempotency_key, families[s.beneficiary_id], s.total, s.balance_after,
                s.agent_attested, s.items, s.disputed_at is not None,
                s.dispute_resolved_at is not None, s.reversed_at is not None,
            )
            for s in sales
        ]  # fmt: skip
    return {"wallets": wallets, "ledger": entries, "redemptions": redeemed}


C, CR, R, RR = (
    LedgerKind.CREDIT, LedgerKind.CREDIT_REVERSAL,
    LedgerKind.REDEMPTION, LedgerKind.REDEMPTION_REVERSAL,
)  # fmt: skip


def _rice(rupiah: int) -> list[dict[str, Any]]:
    return [{"item": "beras", "quantity": 1, "unit_price": rupiah}]


# fmt: off
EXPECTED = {
    # family: (balance, locked, frozen, kks_month, kks_count)
    "wallets": {
        "siti": (380_000, True, False, None, 0),
        "budi": (200_000, False, False, "2026-05", 1),
    },
    # family: [(kind, amount, balance_after, idempotency key, reference)]
    "ledger": {
        "siti": [
            (C, 200_000, 200_000, "bpnt-credit:siti-2026-04", "2026-04"),
            (C, 200_000, 400_000, "bpnt-credit:siti-2026-05", "2026-05"),
            (R, -150_000, 250_000, "redemption:key-code", "EW-3204-001"),
            (RR, 150_000, 400_000, "redemption-reversal:key-code", "EW-3204-001"),
            (R, -20_000, 380_000, "redemption:key-plain", "EW-3204-001"),
        ],
        "budi": [
            (C, 200_000, 200_000, "bpnt-credit:budi-2026-05", "2026-05"),
            (R, -50_000, 150_000, "redemption:key-card", "EW-3204-001"),
            (CR, -150_000, 0, "bpnt-credit-reversal:budi-2026-05:1", "2026-05 short 50000"),
            (C, 200_000, 200_000, "bpnt-credit:budi-2026-05:2", "2026-05"),
        ],
    },
    # (key, family, total, balance_after, attested, items, disputed, resolved, reversed)
    "redemptions": [
        ("key-code", "siti", 150_000, 250_000, False, _rice(150_000), True, True, True),
        ("key-card", "budi", 50_000, 150_000, True, _rice(50_000), False, False, False),
        ("key-plain", "siti", 20_000, 380_000, False, _rice(20_000), True, True, False),
    ],
}
# fmt: on


async def test_the_money_story_on_sqlite(sqlite_sessionmaker) -> None:
    assert await story(sqlite_sessionmaker) == EXPECTED


async def test_postgresql_writes_the_same_money_rows_as_sqlite(
    sessionmaker, sqlite_sessionmaker
) -> None:
    """The one-statement confirmation and the PostgreSQL locks change no row. `sessionmaker`
    is conftest's: the emptied test database, PostgreSQL when TEST_DATABASE_URL is set."""
    url = os.environ.get("TEST_DATABASE_URL", "")
    if not url:
        if REQUIRED:
            pytest.fail("TEST_DATABASE_URL is not set (REQUIRE_SERVICES forbids skipping)")
        pytest.skip("the comparison needs PostgreSQL: TEST_DATABASE_URL is not set")
    assert url.startswith("postgresql"), "TEST_DATABASE_URL must point at PostgreSQL"
    on_postgresql = await story(sessionmaker)
    on_sqlite = await story(sqlite_sessionmaker)
    assert on_postgresql == on_sqlite == EXPECTED
