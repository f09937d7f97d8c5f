"""Property test: random sequences of credits, redemptions, reversals and disputes.

Each step runs in its own transaction through the real services: BPNT disbursement
rows imported with a new status or amount (the wallet sync credits or reverses),
confirmations with random totals (some too large, some retried with the same
idempotency key), reversals, disputes, dismissals and family locks. A small model
predicts every outcome and balance; after each sequence the wallet, the ledger and
the redemptions must agree with each other and with the model.

Deterministic in CI: `derandomize=True` and no example database.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker
from models import Beneficiary, EWarong, LedgerEntry, Redemption
from models.enums import LedgerKind
from services.bpnt import disputes, ledger, redemptions
from services.bpnt.redemptions import BasketLine, ConfirmResult, RedemptionDraft
from services.identity import Hasher
from services.imports.beneficiaries import BENEFICIARY_COLUMNS, import_beneficiary_records
from services.imports.csvfile import parse_csv_text, records_from_dicts
from services.imports.disbursements import DISBURSEMENT_COLUMNS, import_disbursement_records
from tests.conftest import TEST_SECRET, _truncate
from tests.support.clock import NOW
from tests.support.registry import BENEFICIARIES, BUDI, DISBURSEMENTS, SITI
from tests.support.shopping import WARUNG

HASHER = Hasher(TEST_SECRET.encode())
NIKS = {"siti": SITI["nik"], "budi": BUDI["nik"]}
START_BALANCE = {"siti": 400_000, "budi": 0}  # support/registry.py: two BPNT months for Siti
PERIODS = ("2025-01", "2025-02", "2025-03")  # not in the registry: the model starts clean
STATUSES = ("ditetapkan", "diproses", "disalurkan", "gagal")
KEYS = 4  # a small pool, so the same key comes back (a double press, a retried update)

families = st.sampled_from(sorted(NIKS))
credit = st.tuples(
    st.just("credit"),
    families,
    st.sampled_from(PERIODS),
    st.sampled_from(STATUSES),
    st.sampled_from((100_000, 200_000, 350_000)),
)
confirm = st.tuples(
    st.just("confirm"),
    families,
    st.integers(0, KEYS - 1),
    st.one_of(st.integers(1, 150_000), st.integers(150_001, 900_000)),  # some too large
)
on_redemption = st.tuples(st.sampled_from(("reverse", "dispute", "dismiss")), st.integers(0, 9))
lock = st.tuples(st.just("lock"), families, st.booleans())
steps = st.lists(
    st.one_of(credit, confirm, confirm, confirm, on_redemption, on_redemption, lock),
    min_size=6,
    max_size=20,
)


# ---------------------------------------------------------------------------
# The model


@dataclass
class ModelRedemption:
    id: int
    family: str
    total: int
    reversed: bool = False
    disputed: bool = False
    open_dispute: bool = False


@dataclass
class Model:
    balance: dict[str, int] = field(default_factory=lambda: dict(START_BALANCE))
    locked: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(NIKS, False))
    # (family, period) -> (status, amount) as last imported
    disbursements: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    drafts: dict[str, RedemptionDraft] = field(default_factory=dict)  # key -> first draft
    redemptions: list[ModelRedemption] = field(default_factory=list)
    by_key: dict[str, ModelRedemption] = field(default_factory=dict)

    def frozen(self, family: str) -> bool:
        return any(r.open_dispute for r in self.redemptions if r.family == family)

    def credit(self, family: str, period: str, status: str, amount: int) -> None:
        """The wallet rule: reverse the standing credit (never below zero), credit anew."""
        old = self.disbursements.get((family, period))
        self.disbursements[(family, period)] = (status, amount)
        old_due = old[1] if old and old[0] == "disalurkan" else 0
        new_due = amount if status == "disalurkan" else 0
        if old_due == new_due:
            return
        if old_due:
            if old_due > self.balance[family]:
                event("credit reversed short (money already spent)")
            self.balance[family] -= min(old_due, self.balance[family])
        self.balance[family] += new_due

    def confirm(self, draft: RedemptionDraft, family: str) -> ConfirmResult:
        if draft.key in self.by_key:
            return ConfirmResult.ALREADY_CONFIRMED
        if self.locked[family] or self.frozen(family):
            return ConfirmResult.NOT_PROCESSABLE
        if draft.total > self.balance[family]:
            return ConfirmResult.INSUFFICIENT
        self.balance[family] -= draft.total
        return ConfirmResult.CONFIRMED


# ---------------------------------------------------------------------------
# Playing a sequence against the database


async def setup(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """The registry of tests/support/registry.py (imported for real) and the e-Warong."""
    for text, columns, importer in (
        (BENEFICIARIES, BENEFICIARY_COLUMNS, import_beneficiary_records),
        (DISBURSEMENTS, DISBURSEMENT_COLUMNS, import_disbursement_records),
    ):
        records, errors = parse_csv_text(text, columns)
        assert not errors
        report = await importer(sessionmaker, records, HASHER)
        assert report.ok, report.errors
    async with sessionmaker() as session, session.begin():
        session.add(EWarong(**WARUNG))
    async with sessionmaker() as session:
        ids: dict[str, int] = {}
        for name, nik in NIKS.items():
            ids[name] = await session.scalar(
                select(Beneficiary.id).where(Beneficiary.nik_hash == HASHER.nik(nik))
            )
        return ids


async def play(database_url: str, sequence: list[tuple[Any, ...]]) -> None:
    engine = create_engine(database_url)
    try:
        await _truncate(engine)
        sessionmaker = create_sessionmaker(engine)
        ids = await setup(sessionmaker)
        model = Model()
        for number, step in enumerate(sequence):
            await play_step(sessionmaker, ids, model, step, number)
        async with sessionmaker() as session:
            await check(session, ids, model)
    finally:
        await engine.dispose()


async def play_step(
    sessionmaker: async_sessionmaker[AsyncSession],
    ids: dict[str, int],
    model: Model,
    step: tuple[Any, ...],
    number: int,
) -> None:
    kind = step[0]
    if kind == "credit":
        _, family, period, status, amount = step
        row = {
            "nik": NIKS[family], "program": "BPNT", "period": period, "amount": str(amount),
            "status": status, "date": f"{period}-06",
        }  # fmt: skip
        report = await import_disbursement_records(sessionmaker, records_from_dicts([row]), HASHER)
        assert report.ok, report.errors
        before = model.balance[family]
        model.credit(family, period, status, amount)
        event("credit: " + ("up" if model.balance[family] > before else "down or same"))
        return
    if kind == "confirm":
        _, family, key_number, total = step
        key = f"key-{key_number}"
        draft = model.drafts.setdefault(
            key,
            RedemptionDraft(
                key=key, ewarong_code=WARUNG["code"], agent_telegram_id=8000 + number,
                beneficiary_id=ids[family], lines=(BasketLine("beras", 1, total),),
                agent_attested=True, kks_month="2026-05", kks_cap=10**6,
            ),
        )  # fmt: skip
        family = next(name for name, id_ in ids.items() if id_ == draft.beneficiary_id)
        expected = model.confirm(draft, family)
        async with sessionmaker() as session, session.begin():
            outcome = await redemptions.confirm(session, draft, NOW)
        assert outcome.result is expected, (step, outcome.result, expected)
        event(f"confirm: {expected}")
        if expected is ConfirmResult.CONFIRMED:
            assert outcome.redemption is not None
            assert outcome.redemption.balance_after == model.balance[family]
            stored = ModelRedemption(outcome.redemption.id, family, draft.total)
            model.redemptions.append(stored)
            model.by_key[key] = stored
        elif expected is ConfirmResult.ALREADY_CONFIRMED:
            assert outcome.redemption is not None
            assert outcome.redemption.id == model.by_key[key].id
        return
    if kind == "lock":
        _, family, locked = step
        async with sessionmaker() as session, session.begin():
            changed = await ledger.set_family_lock(session, ids[family], locked, actor=1)
        assert changed == (model.locked[family] != locked)
        model.locked[family] = locked
        return
    if not model.redemptions:
        return
    target = model.redemptions[step[1] % len(model.redemptions)]
    async with sessionmaker() as session, session.begin():
        if kind == "reverse":
            result = await disputes.reverse(
                session, target.id, admin=77, reason="uji properti", now=NOW
            )
            event(f"reverse: {result}")
            if target.reversed:
                assert result is disputes.ReversalResult.ALREADY
            elif not target.open_dispute:  # only a sale under an open dispute is reversed
                assert result is disputes.ReversalResult.NOT_DISPUTED
            else:
                assert result is disputes.ReversalResult.REVERSED
                target.reversed, target.open_dispute = True, False
                model.balance[target.family] += target.total
        elif kind == "dispute":
            result = await disputes.dispute(session, target.id, ids[target.family], 5, NOW)
            event(f"dispute: {result}")
            if target.disputed:
                assert result is disputes.DisputeResult.ALREADY
            else:
                assert result is disputes.DisputeResult.OPENED
                target.disputed = target.open_dispute = True
        else:
            dismissed = await disputes.dismiss_dispute(session, target.id, admin=77, now=NOW)
            event(f"dismiss: {dismissed}")
            assert dismissed == target.open_dispute
            target.open_dispute = False


async def check(session: AsyncSession, ids: dict[str, int], model: Model) -> None:
    for family, family_id in ids.items():
        balance, locked, frozen = await ledger.wallet_state(session, family_id)
        entries = list(
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.beneficiary_id == family_id)
                .order_by(LedgerEntry.id)
            )
        )
        assert balance == sum(e.amount for e in entries) == model.balance[family]
        assert balance >= 0
        assert (locked, frozen) == (model.locked[family], model.frozen(family))
        running = 0
        for entry in entries:  # every balance_after is exact, and never negative
            running += entry.amount
            assert entry.balance_after == running >= 0, entry.idempotency_key
        assert {e.kind for e in entries} <= set(LedgerKind)

    repeated = await session.execute(
        select(LedgerEntry.idempotency_key).group_by(LedgerEntry.idempotency_key)
        .having(func.count() > 1)
    )  # fmt: skip
    assert repeated.all() == []
    redemptions = {r.id: r for r in await session.scalars(select(Redemption))}
    assert sorted(redemptions) == sorted(r.id for r in model.redemptions)
    for expected in model.redemptions:
        stored = redemptions[expected.id]
        rows = list(
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.redemption_id == stored.id)
                .order_by(LedgerEntry.id)
            )
        )
        debits = [e for e in rows if e.kind == LedgerKind.REDEMPTION]
        refunds = [e for e in rows if e.kind == LedgerKind.REDEMPTION_REVERSAL]
        assert len(debits) == 1 and debits[0].amount == -stored.total
        assert len(refunds) <= 1 and len(debits) + len(refunds) == len(rows)
        # A reversed redemption's money is back, as a new entry.
        assert (stored.reversed_at is not None) == expected.reversed == (len(refunds) == 1)
        if refunds:
            assert refunds[0].amount == stored.total
        assert (stored.disputed_at is not None) == expected.disputed
        assert (
            stored.disputed_at is not None and stored.dispute_resolved_at is None
        ) == expected.open_dispute


@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(sequence=steps)
def test_ledger_stays_exact_through_any_sequence(
    database_url: str, sequence: list[tuple[Any, ...]]
) -> None:
    asyncio.run(play(database_url, sequence))
