"""BPNT wallets: credits from disbursements, their reversals, and the append-only ledger.

Rules:
- A BPNT disbursement with status `disalurkan` is credited to the family's wallet
  once (ledger kind `credit`, key `bpnt-credit:{id}`, later re-credits
  `bpnt-credit:{id}:{n}`).
- When a later import moves it away from `disalurkan`, or changes its amount, the
  credit is reversed (kind `credit_reversal`, key `bpnt-credit-reversal:{id}:{n}`)
  and, if it is still `disalurkan`, the new amount is credited again.
- A reversal never takes the balance below zero. When the family has already spent
  part of the money, only what remains is reversed; the entry's `reference` then
  reads `{period} short {missing}` so the difference can be settled off-line.
- The credit state of a disbursement is read from its own ledger entries (the last
  credit/reversal wins), so syncing the same disbursement twice changes nothing.
- Every balance change is a single `UPDATE ... SET balance = balance + :x RETURNING
  balance` (the wallet row locked first for reversals) in the caller's
  transaction, together with its ledger row, so concurrent writers cannot lose
  updates.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.services.regions import dialect_insert
from models import BpntWallet, LedgerEntry
from models.base import utcnow

CREDIT = "credit"
CREDIT_REVERSAL = "credit_reversal"
CREDITED_STATUS = "disalurkan"
BPNT = "BPNT"


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


async def _ensure_wallet(session: AsyncSession, beneficiary_id: int) -> None:
    """Create the family's wallet row with a zero balance if it does not exist yet."""
    statement = dialect_insert(session)(BpntWallet.__table__).values(
        beneficiary_id=beneficiary_id, balance=0, updated_at=utcnow()
    )
    await session.execute(statement.on_conflict_do_nothing(index_elements=["beneficiary_id"]))


async def _add_to_balance(session: AsyncSession, beneficiary_id: int, delta: int) -> int:
    """Atomically add `delta` to the balance and return the new balance."""
    wallet = BpntWallet.__table__
    statement = (
        update(wallet)
        .where(wallet.c.beneficiary_id == beneficiary_id)
        .values(balance=wallet.c.balance + delta, updated_at=utcnow())
        .returning(wallet.c.balance)
    )
    return (await session.execute(statement)).scalar_one()


async def _locked_balance(session: AsyncSession, beneficiary_id: int) -> int:
    """The current balance, with the wallet row locked until the transaction ends."""
    statement = (
        select(BpntWallet.balance)
        .where(BpntWallet.beneficiary_id == beneficiary_id)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one()


async def _history(session: AsyncSession, disbursement_id: int) -> list[tuple[str, int]]:
    """(kind, amount) of the credits and reversals of one disbursement, oldest first."""
    statement = (
        select(LedgerEntry.kind, LedgerEntry.amount)
        .where(
            LedgerEntry.disbursement_id == disbursement_id,
            LedgerEntry.kind.in_((CREDIT, CREDIT_REVERSAL)),
        )
        .order_by(LedgerEntry.id)
    )
    return [(kind, amount) for kind, amount in (await session.execute(statement)).all()]


def credited_now(history: list[tuple[str, int]]) -> int:
    """The amount of the credit still standing (the last entry, when it is a credit)."""
    if history and history[-1][0] == CREDIT:
        return history[-1][1]
    return 0


def _count(history: list[tuple[str, int]], kind: str) -> int:
    """How many entries of `kind` a disbursement already has."""
    return sum(1 for entry_kind, _ in history if entry_kind == kind)


async def _write_entry(
    session: AsyncSession,
    source: CreditSource,
    kind: str,
    amount: int,
    balance: int,
    key: str,
    reference: str,
) -> None:
    """Append one ledger row (never updated or deleted afterwards)."""
    statement = insert(LedgerEntry.__table__).values(
        beneficiary_id=source.beneficiary_id,
        kind=kind,
        amount=amount,
        balance_after=balance,
        idempotency_key=key,
        disbursement_id=source.id,
        reference=reference,
        created_at=utcnow(),
    )
    await session.execute(statement)


async def _reverse(session: AsyncSession, source: CreditSource, standing: int, number: int) -> None:
    """Take a standing credit back out of the wallet, but never below zero."""
    available = await _locked_balance(session, source.beneficiary_id)
    taken = min(standing, available)
    balance = await _add_to_balance(session, source.beneficiary_id, -taken)
    reference = source.period if taken == standing else f"{source.period} short {standing - taken}"
    key = f"bpnt-credit-reversal:{source.id}:{number}"
    await _write_entry(session, source, CREDIT_REVERSAL, -taken, balance, key, reference)


async def _credit(session: AsyncSession, source: CreditSource, amount: int, number: int) -> None:
    """Put a disbursement's amount into the wallet."""
    balance = await _add_to_balance(session, source.beneficiary_id, amount)
    key = f"bpnt-credit:{source.id}" if number == 1 else f"bpnt-credit:{source.id}:{number}"
    await _write_entry(session, source, CREDIT, amount, balance, key, source.period)


async def sync_disbursement_credit(session: AsyncSession, disbursement: CreditSource) -> None:
    """Bring the wallet in line with one disbursement's current status and amount."""
    due = credit_due(disbursement.program, disbursement.status, disbursement.amount)
    history = await _history(session, disbursement.id)
    standing = credited_now(history)
    if standing == due:
        return
    await _ensure_wallet(session, disbursement.beneficiary_id)
    if standing:
        await _reverse(session, disbursement, standing, _count(history, CREDIT_REVERSAL) + 1)
    if due:
        await _credit(session, disbursement, due, _count(history, CREDIT) + 1)


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
