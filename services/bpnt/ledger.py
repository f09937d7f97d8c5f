"""BPNT money: the only module that writes wallets (`BpntWallet`) and ledger entries.

Every movement of a family's BPNT money is here, on both databases: credits from
disbursements (one by one or in bulk from an import), their reversals, the debit of a
redemption (stepwise, or PostgreSQL's one-statement confirmation), the refund of a
disputed one, and the wallet's flags (the family's lock, a dispute's freeze). Ledger
kinds are `models.enums.LedgerKind`; idempotency keys are only ever spelled by the key
builders below (`credit_key`, `credit_reversal_key`, `redemption_key`, `reversal_key`).

Rules:
- A BPNT disbursement with status `disalurkan` is credited to the family's wallet
  once (kind `credit`, key `bpnt-credit:{id}`; later re-credits of the same
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
- A redemption debits in ONE statement that cannot overdraw
  (`UPDATE ... SET balance = balance - :x WHERE ... AND balance >= :x`); its ledger
  row (kind `redemption`, key `redemption:{draft key}`) is written in the same
  transaction. A reversed redemption is a new entry (kind `redemption_reversal`, key
  `redemption-reversal:{redemption id}`), never an edit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql import FromClause

from infra.db import dialect_insert
from models import Account, AuditEvent, BpntWallet, EWarong, LedgerEntry, Redemption, ShoppingCode
from models.base import UtcDateTime, utcnow
from models.enums import DisbursementStatus, LedgerKind, Program
from services import audit

CREDITED_STATUS = DisbursementStatus.DISALURKAN.value
BPNT = Program.BPNT.value
SYNC_CHUNK = 1000  # disbursements per bulk sync
REDEMPTION_CONFIRMED = "redemption.confirmed"  # the audit action of a confirmed redemption


# ---------------------------------------------------------------------------
# Idempotency keys: the only place their formats are written

_CREDIT_KEY = "bpnt-credit:"
_CREDIT_REVERSAL_KEY = "bpnt-credit-reversal:"
_REDEMPTION_KEY = "redemption:"
_REVERSAL_KEY = "redemption-reversal:"


def credit_key(disbursement_id: int, number: int = 1) -> str:
    """The `number`-th credit of a disbursement: `bpnt-credit:{id}`, then `...:{id}:{n}`."""
    first = f"{_CREDIT_KEY}{disbursement_id}"
    return first if number == 1 else f"{first}:{number}"


def first_credit_key_sql(disbursement_id: ColumnElement[Any]) -> ColumnElement[str]:
    """`credit_key(id)` computed by the database, for credits written in bulk."""
    return literal(_CREDIT_KEY) + cast(disbursement_id, String)


def credit_reversal_key(disbursement_id: int, number: int) -> str:
    """The `number`-th reversal of a disbursement's credit."""
    return f"{_CREDIT_REVERSAL_KEY}{disbursement_id}:{number}"


def redemption_key(draft_key: str) -> str:
    """The debit of the redemption whose idempotency key is `draft_key`."""
    return f"{_REDEMPTION_KEY}{draft_key}"


def reversal_key(redemption_id: int) -> str:
    """The refund of a reversed redemption."""
    return f"{_REVERSAL_KEY}{redemption_id}"


# ---------------------------------------------------------------------------
# Credits from disbursements


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
    if history and history[-1][0] == LedgerKind.CREDIT:
        return history[-1][1]
    return 0


def _count(history: Sequence[tuple[str, int]], kind: LedgerKind) -> int:
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
            LedgerEntry.kind.in_((LedgerKind.CREDIT, LedgerKind.CREDIT_REVERSAL)),
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
    source: CreditSource, kind: LedgerKind, amount: int, balance: int, key: str, reference: str
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
        key = credit_reversal_key(source.id, _count(history, LedgerKind.CREDIT_REVERSAL) + 1)
        rows.append(
            _entry(source, LedgerKind.CREDIT_REVERSAL, -taken, balances[family], key, reference)
        )
    due = credit_due(source.program, source.status, source.amount)
    if due:
        balances[family] += due
        key = credit_key(source.id, _count(history, LedgerKind.CREDIT) + 1)
        rows.append(_entry(source, LedgerKind.CREDIT, due, balances[family], key, source.period))
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


async def bulk_credit(connection: AsyncConnection, credits: FromClause, now: datetime) -> None:
    """Credit new BPNT disbursements that are `disalurkan`, in bulk (an import's batch).

    `credits` (a staged table or a subquery) has the columns `id`, `beneficiary_id`,
    `amount` and `period` of disbursements that have no ledger history, so each gets its
    first credit (`credit_key(id)`): wallets are created when missing and locked in
    family order, then each entry's balance_after is the running total from the locked
    balance, and each wallet moves by the sum of its family's credits."""
    wallet = BpntWallet.__table__
    stamp = literal(now, UtcDateTime())
    families = select(credits.c.beneficiary_id).distinct()
    await connection.execute(
        dialect_insert(connection)(wallet)
        .from_select(
            ["beneficiary_id", "balance", "updated_at"],
            select(credits.c.beneficiary_id, literal(0), stamp)
            .where(credits.c.beneficiary_id.is_not(None))
            .distinct(),
        )
        .on_conflict_do_nothing(index_elements=["beneficiary_id"])
    )
    if connection.dialect.name == "postgresql":
        locked = (
            select(wallet.c.beneficiary_id)
            .where(wallet.c.beneficiary_id.in_(families))
            .order_by(wallet.c.beneficiary_id)
            .with_for_update()
            .subquery()
        )
        await connection.execute(select(func.count()).select_from(locked))
    running = func.sum(credits.c.amount).over(
        partition_by=credits.c.beneficiary_id, order_by=credits.c.id
    )
    entries = (
        select(
            credits.c.beneficiary_id,
            literal(LedgerKind.CREDIT.value),
            credits.c.amount,
            wallet.c.balance + running,
            first_credit_key_sql(credits.c.id),
            credits.c.id,
            credits.c.period,
            stamp,
        )
        .join(wallet, wallet.c.beneficiary_id == credits.c.beneficiary_id)
        .order_by(credits.c.beneficiary_id, credits.c.id)
    )
    await connection.execute(
        insert(LedgerEntry.__table__).from_select(
            [
                "beneficiary_id",
                "kind",
                "amount",
                "balance_after",
                "idempotency_key",
                "disbursement_id",
                "reference",
                "created_at",
            ],
            entries,
        )
    )
    totals = (
        select(credits.c.beneficiary_id, func.sum(credits.c.amount).label("delta"))
        .group_by(credits.c.beneficiary_id)
        .subquery()
    )
    await connection.execute(
        update(wallet)
        .values(balance=wallet.c.balance + totals.c.delta, updated_at=stamp)
        .where(wallet.c.beneficiary_id == totals.c.beneficiary_id)
    )


# ---------------------------------------------------------------------------
# Reading a wallet


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


async def wallet_state(session: AsyncSession, beneficiary_id: int) -> tuple[int, bool, bool]:
    """(balance, locked, frozen) of the family; an uncredited family has (0, False, False)."""
    wallet = await session.get(BpntWallet, beneficiary_id, populate_existing=True)
    return (wallet.balance, wallet.locked, wallet.frozen) if wallet else (0, False, False)


async def kks_used_this_month(session: AsyncSession, beneficiary_id: int, month: str) -> int:
    """How many redemptions by KKS number alone the family had in `month` (`YYYY-MM`)."""
    wallet = await session.get(BpntWallet, beneficiary_id, populate_existing=True)
    return wallet.kks_count if wallet is not None and wallet.kks_month == month else 0


# ---------------------------------------------------------------------------
# Wallet flags: the family's lock and a dispute's freeze


async def lock_wallet(session: AsyncSession, beneficiary_id: int) -> BpntWallet:
    """The family's wallet row, locked until the transaction ends (created empty when the
    family was never credited). Everything that decides on the family's flags or counts
    its open disputes takes this lock first, so two such decisions run one after the
    other and the second sees what the first wrote."""
    await session.execute(
        dialect_insert(session)(BpntWallet.__table__)
        .values(beneficiary_id=beneficiary_id, balance=0, locked=False, frozen=False)
        .on_conflict_do_nothing(index_elements=["beneficiary_id"])
    )
    wallet = await session.scalar(
        select(BpntWallet)
        .where(BpntWallet.beneficiary_id == beneficiary_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert wallet is not None
    return wallet


def set_frozen(wallet: BpntWallet, frozen: bool) -> None:
    """Freeze (a dispute is open) or unfreeze the family's code flow, on a wallet locked
    by `lock_wallet`; written at the session's next flush."""
    wallet.frozen = frozen


async def set_family_lock(
    session: AsyncSession, beneficiary_id: int, locked: bool, *, actor: int
) -> bool:
    """ "Kunci belanja": stop (or allow again) every redemption for the family."""
    wallet = await lock_wallet(session, beneficiary_id)
    changed = wallet.locked != locked
    wallet.locked = locked
    if changed:
        await audit.record(
            session,
            "wallet.locked" if locked else "wallet.unlocked",
            actor=actor,
            subject_type="beneficiary",
            subject_id=beneficiary_id,
        )
    await session.flush()
    return changed


# ---------------------------------------------------------------------------
# Redemptions: the debit, its ledger row, and the refund of a reversed one


class Purchase(Protocol):
    """What the wallet needs to know of a redemption being confirmed (a RedemptionDraft)."""

    @property
    def key(self) -> str: ...
    @property
    def ewarong_code(self) -> str: ...
    @property
    def agent_telegram_id(self) -> int: ...
    @property
    def beneficiary_id(self) -> int: ...
    @property
    def shopping_code_id(self) -> int | None: ...
    @property
    def agent_attested(self) -> bool: ...
    @property
    def kks_month(self) -> str: ...
    @property
    def kks_cap(self) -> int: ...
    @property
    def total(self) -> int: ...


def _kks_allowed(purchase: Purchase) -> ColumnElement[bool]:
    """For an agent-attested redemption: under the monthly cap, and not a family that uses
    Telegram codes. Read from the wallet row the debit locks, so concurrent ones count."""
    return and_(
        or_(
            BpntWallet.kks_month.is_(None),
            BpntWallet.kks_month != purchase.kks_month,
            BpntWallet.kks_count < purchase.kks_cap,
        ),
        ~exists().where(Account.beneficiary_id == purchase.beneficiary_id),
    )


async def debit(session: AsyncSession, purchase: Purchase) -> int | None:
    """Take the total from the wallet in one statement that cannot overdraw, only for an
    active e-Warong (and within the KKS rules); the new balance, None when refused."""
    conditions = [
        BpntWallet.beneficiary_id == purchase.beneficiary_id,
        BpntWallet.balance >= purchase.total,
        BpntWallet.locked.is_(False),
        BpntWallet.frozen.is_(False),
        exists().where(EWarong.code == purchase.ewarong_code, EWarong.active.is_(True)),
    ]
    values: dict[Any, Any] = {BpntWallet.balance: BpntWallet.balance - purchase.total}
    if purchase.agent_attested:
        conditions.append(_kks_allowed(purchase))
        values[BpntWallet.kks_count] = case(
            (BpntWallet.kks_month == purchase.kks_month, BpntWallet.kks_count + 1), else_=1
        )
        values[BpntWallet.kks_month] = purchase.kks_month
    return await session.scalar(
        update(BpntWallet).where(*conditions).values(values).returning(BpntWallet.balance)
    )


async def undo_debit(session: AsyncSession, purchase: Purchase) -> None:
    """Undo this transaction's own debit (a duplicate found after it); never seen outside."""
    values: dict[Any, Any] = {BpntWallet.balance: BpntWallet.balance + purchase.total}
    if purchase.agent_attested:
        values[BpntWallet.kks_count] = BpntWallet.kks_count - 1
    await session.execute(
        update(BpntWallet)
        .where(BpntWallet.beneficiary_id == purchase.beneficiary_id)
        .values(values)
    )


async def record_redemption(
    session: AsyncSession, purchase: Purchase, balance: int, redemption_id: int, now: datetime
) -> None:
    """The ledger row of a debit just made for the stored redemption `redemption_id`."""
    await session.execute(
        insert(LedgerEntry.__table__).values(
            beneficiary_id=purchase.beneficiary_id,
            kind=LedgerKind.REDEMPTION,
            amount=-purchase.total,
            balance_after=balance,
            idempotency_key=redemption_key(purchase.key),
            redemption_id=redemption_id,
            reference=purchase.ewarong_code,
            created_at=now,
        )
    )


# On PostgreSQL the happy path of a confirmation is ONE statement (data-modifying CTEs):
# use the code, debit, claim the key, write the ledger and audit rows. Each step only
# runs on the previous step's RETURNING, so the order and the guards are those of the
# stepwise path (services.bpnt.redemptions), whose money steps are `debit` and
# `record_redemption` above.
_ONE_STATEMENT = text(
    f"""
WITH code AS (
    UPDATE {ShoppingCode.__tablename__} SET used_at = :now
    WHERE id = :code_id AND used_at IS NULL AND voided_at IS NULL AND expires_at > :now
    RETURNING id
), debit AS (
    UPDATE {BpntWallet.__tablename__} SET balance = balance - :total,
        kks_count = CASE WHEN NOT CAST(:attested AS BOOLEAN) THEN kks_count
                         WHEN kks_month = CAST(:month AS VARCHAR) THEN kks_count + 1
                         ELSE 1 END,
        kks_month = CASE WHEN CAST(:attested AS BOOLEAN) THEN CAST(:month AS VARCHAR)
                         ELSE kks_month END
    WHERE beneficiary_id = :beneficiary_id AND balance >= :total
      AND NOT locked AND NOT frozen
      AND (CAST(:code_id AS BIGINT) IS NULL OR EXISTS (SELECT 1 FROM code))
      AND EXISTS (SELECT 1 FROM {EWarong.__tablename__} WHERE code = :ewarong_code AND active)
      AND (NOT CAST(:attested AS BOOLEAN) OR (
            (kks_month IS DISTINCT FROM CAST(:month AS VARCHAR)
             OR kks_count < CAST(:cap AS INTEGER))
            AND NOT EXISTS (SELECT 1 FROM {Account.__tablename__}
                            WHERE beneficiary_id = :beneficiary_id)))
    RETURNING balance
), claim AS (
    INSERT INTO {Redemption.__tablename__} (idempotency_key, ewarong_code,
        agent_telegram_id, beneficiary_id, shopping_code_id, agent_attested, items, total,
        balance_after, created_at)
    SELECT :key, :ewarong_code, :agent, :beneficiary_id, :code_id, :attested,
        CAST(:items AS JSON), :total, debit.balance, :now
    FROM debit
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, balance_after
), ledger AS (
    INSERT INTO {LedgerEntry.__tablename__} (beneficiary_id, kind, amount, balance_after,
        idempotency_key, redemption_id, reference, created_at)
    SELECT :beneficiary_id, :kind, -CAST(:total AS BIGINT), claim.balance_after,
        :ledger_key, claim.id, :ewarong_code, :now
    FROM claim
    RETURNING id
), audited AS (
    INSERT INTO {AuditEvent.__tablename__} (created_at, actor_telegram_id, action,
        subject_type, subject_id, details)
    SELECT :now, :agent, :action, 'redemption', CAST(claim.id AS TEXT),
        CAST(:details AS JSON)
    FROM claim
)
SELECT (SELECT COUNT(*) FROM code), (SELECT balance FROM debit), (SELECT id FROM claim)
"""
)


async def redeem_in_one_statement(
    session: AsyncSession,
    purchase: Purchase,
    *,
    items: list[dict[str, Any]],
    audit_details: dict[str, Any],
    now: datetime,
) -> tuple[bool, int | None, int | None]:
    """PostgreSQL: (code used, balance after the debit, redemption id), in one statement
    that uses the code, debits, claims the redemption's key and writes the ledger and
    audit rows; a refused step leaves the later ones unrun (the caller undoes the rest)."""
    row = (
        await session.execute(
            _ONE_STATEMENT,
            {
                "now": now,
                "code_id": purchase.shopping_code_id,
                "total": purchase.total,
                "beneficiary_id": purchase.beneficiary_id,
                "key": purchase.key,
                "ewarong_code": purchase.ewarong_code,
                "agent": purchase.agent_telegram_id,
                "attested": purchase.agent_attested,
                "month": purchase.kks_month,
                "cap": purchase.kks_cap,
                "items": json.dumps(items),
                "kind": LedgerKind.REDEMPTION.value,
                "ledger_key": redemption_key(purchase.key),
                "action": REDEMPTION_CONFIRMED,
                "details": json.dumps(audit_details),
            },
        )
    ).one()
    return bool(row[0]), row[1], row[2]


async def refund_redemption(
    session: AsyncSession, redemption: Redemption, now: datetime
) -> int | None:
    """Give a reversed redemption's money back as a new ledger entry; the new balance.
    The caller holds the wallet lock and has claimed the reversal (once per redemption)."""
    balance = await session.scalar(
        update(BpntWallet)
        .where(BpntWallet.beneficiary_id == redemption.beneficiary_id)
        .values(balance=BpntWallet.balance + redemption.total)
        .returning(BpntWallet.balance)
    )
    session.add(
        LedgerEntry(
            beneficiary_id=redemption.beneficiary_id,
            kind=LedgerKind.REDEMPTION_REVERSAL,
            amount=redemption.total,
            balance_after=balance,
            idempotency_key=reversal_key(redemption.id),
            redemption_id=redemption.id,
            reference=redemption.ewarong_code,
            created_at=now,
        )
    )
    return balance
