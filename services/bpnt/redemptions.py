"""BPNT redemptions: the basket an agent fills, its confirmation, and the receipt.

The money rule: a redemption debits the family's wallet in ONE statement that
cannot overdraw (`services.bpnt.ledger.debit`), and the redemption row (which claims
its idempotency key), the ledger row and the audit row are written in the same
transaction. A double press, a retried update or a second agent with the same code
therefore finds the key or the used code and gets "already confirmed", never a second
debit. `confirm_durably` is the redemption's commit point: the sale is saved before
anyone is told, and a failed COMMIT is looked up again before answering.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from infra.db import dialect_insert, storable
from models import Account, EWarong, Redemption, ShoppingCode
from services import audit
from services.bpnt import codes, ledger
from services.bpnt.counter import is_linked

log = logging.getLogger(__name__)

# The foods BPNT may buy (Permensos 5/2021). No bundles ("paket"), no cash-out.
FOOD_ITEMS = (
    "beras", "telur", "daging_ayam", "daging_sapi", "ikan",
    "tahu", "tempe", "kacang", "sayur", "buah",
)  # fmt: skip
MAX_QUANTITY = 1000
MAX_AMOUNT = 10_000_000
# After a failed COMMIT, when to look (on a fresh connection) whether it happened.
AFTER_FAILED_COMMIT_DELAYS = (0.0, 0.5, 1.0, 2.0)


# ---------------------------------------------------------------------------
# Baskets


TOTAL_ONLY = "total"  # the basket line of an amount typed without items


@dataclass(frozen=True)
class BasketLine:
    item: str  # one of FOOD_ITEMS, or TOTAL_ONLY when the agent typed only the total
    quantity: int
    unit_price: int

    @property
    def subtotal(self) -> int:
        return self.quantity * self.unit_price


def parse_amount(text: str) -> int | None:
    """Rupiah typed by an agent: `15000`, `15.000`, `Rp15.000`; None unless 1..MAX_AMOUNT."""
    cleaned = text.strip().lower().removeprefix("rp").strip().replace(".", "").replace(" ", "")
    # isdecimal, not isdigit: superscripts like "²" are digits that int() refuses.
    if not cleaned.isdecimal() or len(cleaned) > 9:
        return None
    value = int(cleaned)
    return value if 0 < value <= MAX_AMOUNT else None


def parse_line(item: str, text: str) -> BasketLine | None:
    """`2 x 15000` (quantity × unit price) or `30000` (one unit); None when not sensible."""
    text = text.strip()
    if len(text) > 40:
        return None
    for separator in ("x", "×", "*"):
        if separator in text.lower():
            quantity_text, _, price_text = text.lower().partition(separator)
            if not quantity_text.strip().isdecimal():
                return None
            quantity = int(quantity_text.strip())
            price = parse_amount(price_text)
            if price is None or not 0 < quantity <= MAX_QUANTITY:
                return None
            line = BasketLine(item, quantity, price)
            return line if line.subtotal <= MAX_AMOUNT else None
    price = parse_amount(text)
    return BasketLine(item, 1, price) if price is not None else None


def basket_total(lines: Sequence[BasketLine]) -> int:
    return sum(line.subtotal for line in lines)


# ---------------------------------------------------------------------------
# Confirming


class ConfirmResult(StrEnum):
    CONFIRMED = "confirmed"
    ALREADY_CONFIRMED = "already_confirmed"
    INSUFFICIENT = "insufficient"
    NOT_PROCESSABLE = "not_processable"
    CODE_INVALID = "code_invalid"  # expired or voided before confirmation
    EMPTY = "empty"
    EWARONG_INACTIVE = "ewarong_inactive"  # deactivated while the basket was being filled
    KKS_REFUSED = "kks_refused"  # by KKS number: the monthly cap, or the family is on Telegram


@dataclass(frozen=True)
class RedemptionDraft:
    """What the agent confirms; `key` is the idempotency key, fixed when the summary is shown."""

    key: str
    ewarong_code: str
    agent_telegram_id: int
    beneficiary_id: int
    lines: tuple[BasketLine, ...]
    shopping_code_id: int | None = None
    agent_attested: bool = False
    # For agent-attested (KKS number) redemptions: the month they count in
    # (`counter.kks_month()`) and how many a family may have in it. The default cap
    # refuses them all.
    kks_month: str = ""
    kks_cap: int = 0

    @property
    def total(self) -> int:
        return basket_total(self.lines)


@dataclass(frozen=True)
class ConfirmOutcome:
    result: ConfirmResult
    redemption: Redemption | None = None


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(12)


async def redemption_by_key(session: AsyncSession, key: str) -> Redemption | None:
    key = storable(key)  # from callback data: anything may come
    return await session.scalar(select(Redemption).where(Redemption.idempotency_key == key))


async def confirmed_at(session: AsyncSession, key: str, ewarong_code: str) -> bool:
    """Whether the redemption with this key was confirmed, at this e-Warong."""
    done = await redemption_by_key(session, key)
    return done is not None and done.ewarong_code == ewarong_code


async def _claim(
    session: AsyncSession, draft: RedemptionDraft, balance: int, now: datetime
) -> int | None:
    """Insert the redemption unless its idempotency key exists; its id, or None if taken."""
    return await session.scalar(
        dialect_insert(session)(Redemption.__table__)
        .values(**_redemption_row(draft, balance, now))
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Redemption.id)
    )


def _redemption_row(draft: RedemptionDraft, balance: int, now: datetime) -> dict[str, Any]:
    """The stored redemption's columns (but its id)."""
    return {
        "idempotency_key": draft.key,
        "ewarong_code": draft.ewarong_code,
        "agent_telegram_id": draft.agent_telegram_id,
        "beneficiary_id": draft.beneficiary_id,
        "shopping_code_id": draft.shopping_code_id,
        "agent_attested": draft.agent_attested,
        "items": _items_json(draft.lines),
        "total": draft.total,
        "balance_after": balance,
        "created_at": now,
    }


def _items_json(lines: Sequence[BasketLine]) -> list[dict[str, Any]]:
    return [
        {"item": line.item, "quantity": line.quantity, "unit_price": line.unit_price}
        for line in lines
    ]


def _audit_details(draft: RedemptionDraft) -> dict[str, Any]:
    return {"ewarong": draft.ewarong_code, "total": draft.total, "attested": draft.agent_attested}


async def _why_refused(
    session: AsyncSession, draft: RedemptionDraft, now: datetime
) -> ConfirmOutcome:
    """After a refused step: someone else's confirmation, a lock, or not enough money."""
    if (done := await redemption_by_key(session, draft.key)) is not None:
        return ConfirmOutcome(ConfirmResult.ALREADY_CONFIRMED, done)
    if draft.shopping_code_id is not None:
        used_by = await session.scalar(
            select(Redemption).where(Redemption.shopping_code_id == draft.shopping_code_id)
        )
        if used_by is not None:
            return ConfirmOutcome(ConfirmResult.ALREADY_CONFIRMED, used_by)
        code = await session.get(ShoppingCode, draft.shopping_code_id)
        if code is None or code.voided_at or code.expires_at <= now:
            return ConfirmOutcome(ConfirmResult.CODE_INVALID)
    ewarong = await session.get(EWarong, draft.ewarong_code, populate_existing=True)
    if ewarong is None or not ewarong.active:
        return ConfirmOutcome(ConfirmResult.EWARONG_INACTIVE)
    _, locked, frozen = await ledger.wallet_state(session, draft.beneficiary_id)
    if locked or frozen:
        return ConfirmOutcome(ConfirmResult.NOT_PROCESSABLE)
    if draft.agent_attested and (
        await is_linked(session, draft.beneficiary_id)
        or await ledger.kks_used_this_month(session, draft.beneficiary_id, draft.kks_month)
        >= draft.kks_cap
    ):
        return ConfirmOutcome(ConfirmResult.KKS_REFUSED)
    return ConfirmOutcome(ConfirmResult.INSUFFICIENT)


async def _confirm_postgresql(
    session: AsyncSession, draft: RedemptionDraft, now: datetime
) -> tuple[bool, int | None, int | None]:
    """(code used, balance after the debit, redemption id) from the one-statement path."""
    return await ledger.redeem_in_one_statement(
        session, draft, items=_items_json(draft.lines), audit_details=_audit_details(draft),
        now=now,
    )  # fmt: skip


async def _confirm_stepwise(
    session: AsyncSession, draft: RedemptionDraft, now: datetime
) -> tuple[bool, int | None, int | None]:
    """The same steps as `ledger.redeem_in_one_statement`, one statement each (SQLite)."""
    code_id = draft.shopping_code_id
    if code_id is not None and not await codes.use_code(session, code_id, now):
        return False, None, None
    balance = await ledger.debit(session, draft)
    if balance is None:
        return True, None, None
    redemption_id = await _claim(session, draft, balance, now)
    if redemption_id is None:
        return True, balance, None
    await ledger.record_redemption(session, draft, balance, redemption_id, now)
    await audit.record_fast(
        session, ledger.REDEMPTION_CONFIRMED, actor=draft.agent_telegram_id,
        subject_type="redemption", subject_id=redemption_id, now=now, **_audit_details(draft),
    )  # fmt: skip
    return True, balance, redemption_id


async def confirm(session: AsyncSession, draft: RedemptionDraft, now: datetime) -> ConfirmOutcome:
    """Debit the family and record the redemption, exactly once per idempotency key.

    Runs in the caller's transaction, in this order: use the code (one statement that
    only an unused, unexpired code passes), debit (one statement that cannot overdraw),
    claim the idempotency key (insert-if-absent), then the ledger and audit rows. A
    refused step undoes the earlier steps of this same transaction, so nothing of a
    refused confirmation is ever visible; concurrent duplicates wait on the row locks
    and then find the code used or the key taken.
    """
    if draft.total <= 0:
        return ConfirmOutcome(ConfirmResult.EMPTY)
    steps = _confirm_postgresql if session.bind.dialect.name == "postgresql" else _confirm_stepwise
    code_used, balance, redemption_id = await steps(session, draft, now)
    if redemption_id is None:  # refused at some step: undo the steps that did run
        if balance is not None:  # the same button pressed twice: the first one won
            await ledger.undo_debit(session, draft)
        if code_used and draft.shopping_code_id is not None:
            await codes.release_code(session, draft.shopping_code_id)
        return await _why_refused(session, draft, now)
    assert balance is not None
    # A detached copy of the stored row, for receipts (no extra SELECT).
    redemption = Redemption(id=redemption_id, **_redemption_row(draft, balance, now))
    return ConfirmOutcome(ConfirmResult.CONFIRMED, redemption)


# ---------------------------------------------------------------------------
# Receipts


@dataclass(frozen=True)
class Receipt:
    redemption: Redemption
    ewarong: EWarong
    family_account: int | None  # Telegram id of the family's linked account
    family_locale: str | None
    region_code: str  # for the regional time zone


async def receipt(session: AsyncSession, redemption: Redemption) -> Receipt:
    ewarong = await session.get(EWarong, redemption.ewarong_code)
    assert ewarong is not None
    account = await session.scalar(
        select(Account).where(Account.beneficiary_id == redemption.beneficiary_id)
    )
    return Receipt(
        redemption=redemption,
        ewarong=ewarong,
        family_account=account.telegram_id if account else None,
        family_locale=account.locale or account.language_code if account else None,
        region_code=ewarong.village_code,
    )


# ---------------------------------------------------------------------------
# The commit point


class Durability(StrEnum):
    SAVED = "saved"  # committed: `result` and `receipt` say what happened
    NOT_THROUGH = "not_through"  # the COMMIT failed and nothing was stored: nothing charged
    UNKNOWN = "unknown"  # the COMMIT failed and the database could not be asked in time


@dataclass(frozen=True)
class DurableOutcome:
    durability: Durability
    result: ConfirmResult
    # The sale of this draft (confirmed now, or by an earlier press of the same summary
    # whose answer was lost): the agent's and the family's receipt. None when refused.
    receipt: Receipt | None = None


async def confirm_durably(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    draft: RedemptionDraft,
    now: datetime,
) -> DurableOutcome:
    """Confirm and COMMIT, so that the money is saved before anyone is told; from then on
    messages are best effort and a failed one can no longer undo a purchase both sides
    were shown. This is the one commit point outside the session middleware.

    When the COMMIT fails (the database went away during it), the transaction is rolled
    back and the idempotency key is looked up on a fresh connection, waiting a little
    for the database to come back (`AFTER_FAILED_COMMIT_DELAYS`): a sale found there is
    reported as saved, with its receipt."""
    outcome = await confirm(session, draft, now)
    found = None
    if outcome.redemption is not None and outcome.redemption.idempotency_key == draft.key:
        found = await receipt(session, outcome.redemption)
    try:
        await session.commit()
    except Exception as error:  # the database went away during COMMIT: did it happen?
        log.warning("a redemption's commit failed: %s", type(error).__name__)
        await _rollback(session)
        known, found = await _receipt_after_failed_commit(sessionmaker, draft.key)
        if found is None:  # nothing charged: the same summary may be confirmed again
            durability = Durability.NOT_THROUGH if known else Durability.UNKNOWN
            return DurableOutcome(durability, outcome.result)
    return DurableOutcome(Durability.SAVED, outcome.result, found)


async def _rollback(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception as error:  # the connection is gone; the server rolled back itself
        log.warning("rollback failed: %s", type(error).__name__)


async def _receipt_after_failed_commit(
    sessionmaker: async_sessionmaker[AsyncSession], key: str
) -> tuple[bool, Receipt | None]:
    """Look the idempotency key up on a fresh connection, waiting a little for the
    database to come back: (whether we know, the receipt if it went through)."""
    for delay in AFTER_FAILED_COMMIT_DELAYS:
        await asyncio.sleep(delay)
        try:
            async with sessionmaker() as session:
                redemption = await redemption_by_key(session, key)
                if redemption is None:
                    return True, None
                return True, await receipt(session, redemption)
        except Exception as error:
            log.warning("checking a redemption after a failed commit: %s", type(error).__name__)
    return False, None
