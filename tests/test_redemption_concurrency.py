"""200 confirmations racing on one family's balance, each in its own transaction.

Several agents confirm at once: ordinary baskets that together far exceed the
family's Rp1.000.000 (so many must be refused), the same button pressed twice or
a retried update (one idempotency key confirmed several times), and one shopping
code typed in by several agents (different keys, one code). Afterwards the
wallet, the ledger and the redemptions must agree to the rupiah.

On PostgreSQL the transactions truly overlap (READ COMMITTED, a pool of 50
connections); on SQLite (the default run) the same race runs with the writers
serialised by the database lock and its busy timeout. A PostgreSQL-only test
holds the wallet row locked until dozens of confirmations queue behind it, then
lets them all go at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker
from models import Beneficiary, BpntWallet, EWarong, LedgerEntry, Redemption, ShoppingCode
from models.enums import LedgerKind
from services.bpnt import codes, counter, ledger
from services.bpnt.redemptions import (
    BasketLine,
    ConfirmOutcome,
    ConfirmResult,
    RedemptionDraft,
    confirm,
)
from services.identity import Hasher
from services.imports.csvfile import records_from_dicts
from services.imports.disbursements import import_disbursement_records
from tests.conftest import TEST_SECRET
from tests.support.clock import NOW
from tests.support.registry import BUDI
from tests.support.shopping import OTHER_WARUNG, shopping_world

HASHER = Hasher(TEST_SECRET.encode())
ON_POSTGRES = os.environ.get("TEST_DATABASE_URL", "").startswith("postgresql")

CREDITS = 1_000_000  # five BPNT months of Rp200.000
CONFIRMATIONS = 200
AGENTS = tuple(range(7001, 7009))  # telegram ids of eight agents at the counter
# Ordinary baskets cost multiples of Rp75.000, so together they can never take more
# than Rp975.000 of the million: the small duplicated baskets (Rp23.700 at most, see
# below) can always be paid, and each duplicate group must end with one confirmation.
BASKET_UNIT = 75_000
KEY_GROUPS = 10  # keys confirmed 3 times each: a double press, a retried update
KEY_PRESSES = 3
CODE_GROUPS = 6  # codes typed in by 3 agents each; the first agent also presses twice
CODE_AGENTS = 3
# Per code: CODE_AGENTS agents plus the first agent's second press, one of them confirmed.
DUPLICATES = KEY_GROUPS * (KEY_PRESSES - 1) + CODE_GROUPS * CODE_AGENTS
POOL = {"pool_size": 20, "max_overflow": 30, "pool_timeout": 120}


@dataclass(frozen=True)
class Race:
    family: int
    drafts: list[RedemptionDraft]  # in launch order, duplicates included
    key_groups: dict[str, int]  # idempotency key -> presses
    code_groups: dict[int, set[str]]  # shopping code id -> keys of the agents using it


def basket(
    key: str, agent: int, family: int, total: int, code_id: int | None = None
) -> RedemptionDraft:
    return RedemptionDraft(
        key=key,
        ewarong_code=OTHER_WARUNG["code"],  # Budi's regency (Kota Bandung)
        agent_telegram_id=agent,
        beneficiary_id=family,
        lines=(BasketLine("beras", 1, total),),
        shopping_code_id=code_id,
        agent_attested=code_id is None,
        kks_month="2026-05",
        kks_cap=CONFIRMATIONS,  # the cap is not what this race is about
    )


async def family_with_a_million(sessionmaker: async_sessionmaker[AsyncSession], tmp_path) -> int:
    """Budi (BPNT only) credited Rp1.000.000 by five BPNT months, through the real import."""
    world = await shopping_world(sessionmaker, HASHER, tmp_path)
    months = [
        {"nik": BUDI["nik"], "program": "BPNT", "period": f"2026-{month:02d}",
         "amount": "200000", "status": "disalurkan", "date": f"2026-{month:02d}-06"}
        for month in range(1, 6)
    ]  # fmt: skip
    report = await import_disbursement_records(sessionmaker, records_from_dicts(months), HASHER)
    assert report.ok, report.errors
    assert (report.inserted, report.updated) == (4, 1)  # 2026-05 moved from diproses
    async with sessionmaker() as session:
        assert (await ledger.wallet_state(session, world["budi"]))[0] == CREDITS
    return world["budi"]


async def prepare_race(sessionmaker: async_sessionmaker[AsyncSession], family: int) -> Race:
    """The 200 drafts: ordinary baskets, duplicated keys and shared codes, shuffled."""
    code_ids: list[int] = []
    async with sessionmaker() as session, session.begin():
        # The first code the real way: issued to the family, looked up at the counter.
        budi = await session.get(Beneficiary, family)
        issued = await codes.issue_code(session, budi, HASHER, NOW)
        ewarong = await session.get(EWarong, OTHER_WARUNG["code"])
        found = await counter.find_by_code(session, issued.code, HASHER, NOW, ewarong)
        assert found.shopping_code_id is not None
        code_ids.append(found.shopping_code_id)
        # The bot keeps one active code per family; more rows stand in for further visits,
        # so that the code path races more than once.
        extra = [
            ShoppingCode(
                beneficiary_id=family,
                code_hash=HASHER.digest("shopping-code", f"race-{n}"),
                created_at=NOW,
                expires_at=NOW + codes.CODE_TTL,
            )
            for n in range(1, CODE_GROUPS)
        ]
        session.add_all(extra)
        await session.flush()
        code_ids += [code.id for code in extra]

    drafts: list[RedemptionDraft] = []
    key_groups: dict[str, int] = {}
    code_groups: dict[int, set[str]] = defaultdict(set)
    agent = iter(AGENTS * CONFIRMATIONS)
    for n in range(KEY_GROUPS):  # Rp1.000..Rp1.900, Rp14.500 together
        draft = basket(f"press-{n}", next(agent), family, 1_000 + 100 * n)
        drafts += [draft] * KEY_PRESSES
        key_groups[draft.key] = KEY_PRESSES
    for n, code_id in enumerate(code_ids):  # at most Rp1.500 per code, Rp9.000 together
        for seat in range(CODE_AGENTS):
            draft = basket(f"code-{n}-{seat}", next(agent), family, 1_000 + 250 * seat, code_id)
            code_groups[code_id].add(draft.key)
            drafts.append(draft)
            if seat == 0:  # the same agent presses twice; another agent may still win
                drafts.append(draft)
    n = 0
    while len(drafts) < CONFIRMATIONS:
        total = BASKET_UNIT * (1 + n % 3)
        drafts.append(basket(f"basket-{n}", next(agent), family, total))
        n += 1
    random.Random(20260520).shuffle(drafts)
    return Race(family, drafts, key_groups, dict(code_groups))


async def confirm_each_in_its_own_transaction(
    sessionmaker: async_sessionmaker[AsyncSession], drafts: list[RedemptionDraft]
) -> list[ConfirmOutcome | BaseException]:
    """One session and transaction per confirmation, like one update in the bot."""

    async def one(draft: RedemptionDraft) -> ConfirmOutcome:
        async with sessionmaker() as session, session.begin():
            return await confirm(session, draft, NOW)

    return await asyncio.gather(*(one(d) for d in drafts), return_exceptions=True)


async def check_race(
    session: AsyncSession, race: Race, outcomes: list[ConfirmOutcome | BaseException]
) -> Counter[ConfirmResult]:
    """Every invariant of the brief; returns the outcome counts."""
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    # Serialization failures or deadlocks under READ COMMITTED would be a bug in confirm().
    assert not errors, [f"{type(e).__name__}: {e}" for e in errors[:5]]
    results = Counter(o.result for o in outcomes)
    assert set(results) <= {
        ConfirmResult.CONFIRMED,
        ConfirmResult.ALREADY_CONFIRMED,
        ConfirmResult.INSUFFICIENT,
    }, results

    family = race.family
    balance = await session.scalar(
        select(BpntWallet.balance).where(BpntWallet.beneficiary_id == family)
    )
    ledger_sum = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
            LedgerEntry.beneficiary_id == family
        )
    )
    redemptions = list(
        await session.scalars(select(Redemption).where(Redemption.beneficiary_id == family))
    )
    confirmed_total = sum(r.total for r in redemptions)
    assert balance == ledger_sum == CREDITS - confirmed_total
    assert balance >= 0
    assert results[ConfirmResult.CONFIRMED] == len(redemptions)

    # Each idempotency key at most once, in redemptions and in the ledger.
    for column in (Redemption.idempotency_key, LedgerEntry.idempotency_key):
        repeated = await session.execute(
            select(column, func.count()).group_by(column).having(func.count() > 1)
        )
        assert repeated.all() == []
    entries = {
        e.redemption_id: e
        for e in await session.scalars(
            select(LedgerEntry).where(LedgerEntry.kind == LedgerKind.REDEMPTION)
        )
    }
    assert len(entries) == len(redemptions)
    for r in redemptions:
        entry = entries[r.id]
        assert entry.idempotency_key == f"redemption:{r.idempotency_key}"
        assert (entry.amount, entry.balance_after) == (-r.total, r.balance_after)
    # No lost update: the balances after each debit form one unbroken chain down from
    # the credits (debits are serialised on the wallet row).
    running = CREDITS
    for r in sorted(redemptions, key=lambda r: -r.balance_after):
        running -= r.total
        assert r.balance_after == running
    # Every CONFIRMED outcome is a stored redemption, and only one per key.
    confirmed_keys = [
        o.redemption.idempotency_key for o in outcomes if o.result is ConfirmResult.CONFIRMED
    ]
    assert sorted(confirmed_keys) == sorted(r.idempotency_key for r in redemptions)

    by_key: dict[str, list[ConfirmResult]] = defaultdict(list)
    for draft, outcome in zip(race.drafts, outcomes, strict=True):
        by_key[draft.key].append(outcome.result)
    for key, presses in race.key_groups.items():
        assert len(by_key[key]) == presses
        assert Counter(by_key[key]) == Counter(
            {ConfirmResult.CONFIRMED: 1, ConfirmResult.ALREADY_CONFIRMED: presses - 1}
        ), (key, by_key[key])

    # Each shopping code used by at most one redemption; each shared code by exactly one
    # of its agents, the others told it is already confirmed.
    used = Counter(r.shopping_code_id for r in redemptions if r.shopping_code_id is not None)
    assert all(count == 1 for count in used.values()), used
    for code_id, keys in race.code_groups.items():
        assert used[code_id] == 1
        winners = [k for k in keys if ConfirmResult.CONFIRMED in by_key[k]]
        assert len(winners) == 1, (code_id, {k: by_key[k] for k in keys})
        assert Counter(by_key[winners[0]]) == Counter(
            {
                ConfirmResult.CONFIRMED: 1,
                ConfirmResult.ALREADY_CONFIRMED: len(by_key[winners[0]]) - 1,
            }
        )
        losers = [result for k in keys if k not in winners for result in by_key[k]]
        assert set(losers) == {ConfirmResult.ALREADY_CONFIRMED}
        code = await session.get(ShoppingCode, code_id)
        assert code is not None and code.used_at is not None

    # A refusal is only ever for want of money: the balance never came back up, so
    # it must still be below every refused amount.
    refused = [
        d.total
        for d, o in zip(race.drafts, outcomes, strict=True)
        if o.result is ConfirmResult.INSUFFICIENT
    ]
    assert refused, "the baskets were meant to exceed the balance"
    assert balance < min(refused)
    return results


def summary(dialect: str, race: Race, results: Counter[ConfirmResult], seconds: float) -> str:
    duplicates = results[ConfirmResult.ALREADY_CONFIRMED]
    return (
        f"redemption race [{dialect}]: {len(race.drafts)} confirmations by {len(AGENTS)} "
        f"agents in {seconds:.2f}s -> {results[ConfirmResult.CONFIRMED]} confirmed, "
        f"{results[ConfirmResult.INSUFFICIENT]} refused (insufficient), "
        f"{duplicates} duplicates answered already-confirmed"
    )


@pytest.fixture
async def race_engine(engine: AsyncEngine, database_url: str):
    """A second engine with a pool big enough for dozens of overlapping transactions."""
    race = create_engine(database_url, **POOL)
    yield race
    await race.dispose()


async def run_and_check(
    sessionmaker: async_sessionmaker[AsyncSession],
    race_engine: AsyncEngine,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    launch: Callable[
        [async_sessionmaker[AsyncSession], Race], Awaitable[list[ConfirmOutcome | BaseException]]
    ],
) -> Counter[ConfirmResult]:
    family = await family_with_a_million(sessionmaker, tmp_path)
    race = await prepare_race(sessionmaker, family)
    assert len(race.drafts) == CONFIRMATIONS
    started = time.perf_counter()
    outcomes = await launch(create_sessionmaker(race_engine), race)
    seconds = time.perf_counter() - started
    async with sessionmaker() as session:
        results = await check_race(session, race, outcomes)
    # The duplicated baskets are always affordable (see BASKET_UNIT), so these are exact:
    # each key group and each code confirms once, every other press is a duplicate.
    assert results[ConfirmResult.ALREADY_CONFIRMED] == DUPLICATES
    assert results[ConfirmResult.CONFIRMED] >= KEY_GROUPS + CODE_GROUPS
    with capsys.disabled():
        print("\n" + summary(race_engine.dialect.name, race, results, seconds))
    return results


async def test_racing_confirmations_keep_the_balance_exact(
    sessionmaker, race_engine, tmp_path, capsys
):
    async def launch(
        racing: async_sessionmaker[AsyncSession], race: Race
    ) -> list[ConfirmOutcome | BaseException]:
        return await confirm_each_in_its_own_transaction(racing, race.drafts)

    await run_and_check(sessionmaker, race_engine, tmp_path, capsys, launch)


@pytest.mark.skipif(
    not ON_POSTGRES,
    reason="needs PostgreSQL row locks and pg_stat_activity (set TEST_DATABASE_URL); "
    "the SQLite run serialises writers, so the race above is its meaningful form",
)
async def test_confirmations_queued_behind_a_held_wallet_lock_all_go_at_once(
    sessionmaker, race_engine, tmp_path, capsys
):
    """Worst case for contention: hold the wallet row until dozens of confirmations wait
    on locks (the wallet, a key, a code), then release them together."""
    waiting_seen = 0

    async def launch(
        racing: async_sessionmaker[AsyncSession], race: Race
    ) -> list[ConfirmOutcome | BaseException]:
        nonlocal waiting_seen
        async with race_engine.connect() as holder, race_engine.connect() as watcher:
            await watcher.execution_options(isolation_level="AUTOCOMMIT")
            transaction = await holder.begin()
            await holder.execute(
                select(BpntWallet.balance)
                .where(BpntWallet.beneficiary_id == race.family)
                .with_for_update()
            )
            racing_task = asyncio.ensure_future(
                confirm_each_in_its_own_transaction(racing, race.drafts)
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not racing_task.done():
                waiting_seen = await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting_seen >= 30:
                    break
                await asyncio.sleep(0.05)
            await transaction.commit()
            return await racing_task

    await run_and_check(sessionmaker, race_engine, tmp_path, capsys, launch)
    with capsys.disabled():
        print(f"(released together: {waiting_seen} confirmations were waiting on locks)")
    # The pool holds 50 connections; two are the holder and the watcher.
    assert waiting_seen >= 30, f"only {waiting_seen} confirmations were waiting at once"
