"""BPNT wallets: credits from disbursements, their reversals, and the append-only ledger.

Rules:
- A BPNT disbursement with status `disalurkan` is credited to the family's wallet
  once (ledger kind `credit`, key `bpnt-credit:{id}`; later re-credits of the same
  disbursement `bpnt-credit:{id}:{n}`). `reference` is the period.
- When a later import moves it away from `disalurkan`, or changes its amount, the
  standing credit is reversed (kind `credit_reversal`, negative amount, key
  `bpnt-credit-reversal:{id}:{n}`) and, if it is still `disalurkan`, the new
  amount is credited again.
- A reversal never takes the balance below zero. When the family has already spent
  part of the money, only what remains is reversed and the entry's `reference`
  reads `{period} short {missing}` (e.g. `2026-02 short 150000`), so the
  difference can be settled outside the bot. The disbursement then counts as not
  credited; a later return to `disalurkan` credits its full amount again.
- A disbursement's credit state is read from its own ledger entries (the last
  credit or reversal wins), so syncing the same disbursement twice changes nothing.
- Balances only move by increments (`UPDATE ... SET balance = balance + :x`), on
  wallet rows locked (`SELECT ... FOR UPDATE`, in beneficiary order) for the rest
  of the caller's transaction, and always together with their ledger rows. So a
  concurrent writer (e.g. a redemption) can never lose an update, and each
  `balance_after` is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import BpntWallet, LedgerEntry
from models.base import utcnow
from services.regions import dialect_insert

CREDIT = "credit"
CREDIT_REVERSAL = "credit_reversal"
CREDITED_STATUS = "disalurkan"
BPNT = "BPNT"
SYNC_CHUNK = 1000  # disbursements per bulk sync


class CreditSource(Protocol):
    """What the wallet needs to know of a disbursement (an ORM row or an import record)."""

    id: int
    beneficiary_id: int
    program: str
    period: str
    amount: int
    status: str


def credit_due(program: str, status: str, amount: int) -> int:
    """How much a disbursement should have credited to the wallet: its amount or 0."""
    return amount if program == BPNT and status == CREDITED_STATUS else 0


def credited_now(history: Sequence[tuple[str, int]]) -> int:
    """The amount of the credit still standing (the last entry, when it is a credit)."""
    if history and history[-1][0] == CREDIT:
        return history[-1][1]
    return 0


def _count(history: Sequence[tuple[str, int]], kind: str) -> int:
    """How many entries of `kind` a disbursement already has."""
    return sum(1 for entry_kind, _ in history if entry_kind == kind)


async def _histories(
    session: AsyncSession, sources: Sequence[CreditSource]
) -> dict[int, list[tuple[str, int]]]:
    """disbursement id -> (kind, amount) of its credits and reversals, oldest first."""
    statement = (
        select(LedgerEntry.disbursement_id, LedgerEntry.kind, LedgerEntry.amount)
        .where(
            # Found through the (beneficiary_id, id) index; a family has few entries.
            LedgerEntry.beneficiary_id.in_({source.beneficiary_id for source in sources}),
            LedgerEntry.disbursement_id.in_([source.id for source in sources]),
            LedgerEntry.kind.in_((CREDIT, CREDIT_REVERSAL)),
        )
        .order_by(LedgerEntry.id)
    )
    histories: dict[int, list[tuple[str, int]]] = {source.id: [] for source in sources}
    for disbursement_id, kind, amount in await session.execute(statement):
        histories[disbursement_id].append((kind, amount))
    return histories


async def _lock_wallets(session: AsyncSession, families: Sequence[int]) -> dict[int, int]:
    """Create missing wallets, lock all of them, and return their balances."""
    wallet = BpntWallet.__table__
    now = utcnow()
    await session.execute(
        dialect_insert(session)(wallet).on_conflict_do_nothing(index_elements=["beneficiary_id"]),
        [{"beneficiary_id": family, "balance": 0, "updated_at": now} for family in families],
    )
    statement = (
        select(wallet.c.beneficiary_id, wallet.c.balance)
        .where(wallet.c.beneficiary_id.in_(families))
        .order_by(wallet.c.beneficiary_id)
        .with_for_update()
    )
    return {family: amount for family, amount in await session.execute(statement)}


def _entry(
    source: CreditSource, kind: str, amount: int, balance: int, key: str, reference: str
) -> dict[str, Any]:
    """One ledger row to insert."""
    return {
        "beneficiary_id": source.beneficiary_id,
        "kind": kind,
        "amount": amount,
        "balance_after": balance,
        "idempotency_key": key,
        "disbursement_id": source.id,
        "reference": reference,
        "created_at": utcnow(),
    }


def _movements(
    source: CreditSource, history: Sequence[tuple[str, int]], balances: dict[int, int]
) -> list[dict[str, Any]]:
    """Ledger rows that bring one disbursement's credit in line (updates `balances`)."""
    family, rows = source.beneficiary_id, []
    standing = credited_now(history)
    if standing:
        taken = min(standing, balances[family])
        balances[family] -= taken
        reference = (
            source.period if taken == standing else f"{source.period} short {standing - taken}"
        )
        key = f"bpnt-credit-reversal:{source.id}:{_count(history, CREDIT_REVERSAL) + 1}"
        rows.append(_entry(source, CREDIT_REVERSAL, -taken, balances[family], key, reference))
    due = credit_due(source.program, source.status, source.amount)
    if due:
        balances[family] += due
        number = _count(history, CREDIT) + 1
        key = f"bpnt-credit:{source.id}" if number == 1 else f"bpnt-credit:{source.id}:{number}"
        rows.append(_entry(source, CREDIT, due, balances[family], key, source.period))
    return rows


async def sync_disbursement_credits(
    session: AsyncSession, disbursements: Sequence[CreditSource]
) -> None:
    """Bring the wallets in line with these disbursements (each at most once), in bulk."""
    for start in range(0, len(disbursements), SYNC_CHUNK):
        await _sync_chunk(session, disbursements[start : start + SYNC_CHUNK])


async def _sync_chunk(session: AsyncSession, sources: Sequence[CreditSource]) -> None:
    """Sync one chunk: read histories, lock wallets, move balances, append entries."""
    if not sources:
        return
    histories = await _histories(session, sources)
    pending = [
        source
        for source in sources
        if credited_now(histories[source.id])
        != credit_due(source.program, source.status, source.amount)
    ]
    if not pending:
        return
    families = sorted({source.beneficiary_id for source in pending})
    balances = await _lock_wallets(session, families)
    before = dict(balances)
    entries = [row for s in pending for row in _movements(s, histories[s.id], balances)]
    wallet = BpntWallet.__table__
    increments = [
        {"family": family, "delta": balances[family] - before[family]}
        for family in families
        if balances[family] != before[family]
    ]
    if increments:
        statement = (
            update(wallet)
            .where(wallet.c.beneficiary_id == bindparam("family"))
            .values(balance=wallet.c.balance + bindparam("delta"), updated_at=utcnow())
        )
        await session.execute(statement, increments)
    await session.execute(insert(LedgerEntry.__table__), entries)


async def sync_disbursement_credit(session: AsyncSession, disbursement: CreditSource) -> None:
    """Bring the wallet in line with one disbursement's current status and amount."""
    await sync_disbursement_credits(session, [disbursement])


async def balance(session: AsyncSession, beneficiary_id: int) -> int:
    """The family's BPNT balance in rupiah (0 when it never had a credit)."""
    value = await session.scalar(
        select(BpntWallet.balance).where(BpntWallet.beneficiary_id == beneficiary_id)
    )
    return value or 0


async def recent_entries(
    session: AsyncSession, beneficiary_id: int, limit: int = 5
) -> list[LedgerEntry]:
    """The family's latest ledger entries, newest first."""
    statement = (
        select(LedgerEntry)
        .where(LedgerEntry.beneficiary_id == beneficiary_id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    )
    return list(await session.scalars(statement))
