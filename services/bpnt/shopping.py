"""BPNT shopping at e-Warongs: one-time codes, redemptions, disputes, family locks, reports.

The money rule: a redemption debits the family's wallet in ONE statement that
cannot overdraw (`UPDATE ... SET balance = balance - :x WHERE ... AND balance >= :x`),
and the redemption row (which claims its idempotency key), the ledger row and the
audit row are written in the same transaction. A double press, a retried update or
a second agent with the same code therefore finds the key or the used code and gets
"already confirmed", never a second debit.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import (
    Account,
    Beneficiary,
    BpntWallet,
    EWarong,
    LedgerEntry,
    Redemption,
    ShoppingCode,
)
from services import audit
from services.identity import Hasher, mask_name
from services.regions import dialect_insert, timezone_for

CODE_TTL = timedelta(minutes=10)
# 10^12 codes: with a million live codes at once, 1,000 guesses hit one with probability
# 1000 × 10^6 / 10^12 = 0.001 (README, "Security and privacy"); a 16-digit number is a KKS.
CODE_DIGITS = 12
KKS_DIGITS = 16
REGENCY_CODE_LENGTH = 5  # "32.04": a code is only valid at e-Warongs of the family's regency
REDEMPTION = "redemption"
REDEMPTION_REVERSAL = "redemption_reversal"

# The foods BPNT may buy (Permensos 5/2021). No bundles ("paket"), no cash-out.
FOOD_ITEMS = (
    "beras", "telur", "daging_ayam", "daging_sapi", "ikan",
    "tahu", "tempe", "kacang", "sayur", "buah",
)  # fmt: skip
MAX_QUANTITY = 1000
MAX_AMOUNT = 10_000_000


# ---------------------------------------------------------------------------
# Wallet flags


async def _wallet(session: AsyncSession, beneficiary_id: int) -> BpntWallet:
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


async def set_family_lock(
    session: AsyncSession, beneficiary_id: int, locked: bool, *, actor: int
) -> bool:
    """ "Kunci belanja": stop (or allow again) every redemption for the family."""
    wallet = await _wallet(session, beneficiary_id)
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


async def wallet_state(session: AsyncSession, beneficiary_id: int) -> tuple[int, bool, bool]:
    """(balance, locked, frozen) of the family; an uncredited family has (0, False, False)."""
    wallet = await session.get(BpntWallet, beneficiary_id, populate_existing=True)
    return (wallet.balance, wallet.locked, wallet.frozen) if wallet else (0, False, False)


# ---------------------------------------------------------------------------
# One-time shopping codes


class CodeResult(StrEnum):
    ISSUED = "issued"
    NOT_BPNT = "not_bpnt"
    NOT_PROCESSABLE = "not_processable"  # locked by the family or frozen by a dispute


@dataclass(frozen=True)
class IssuedCode:
    result: CodeResult
    code: str | None = None
    expires_at: datetime | None = None


def shown_code(code: str) -> str:
    """`482910573362` -> `4829 1057 3362`, easier to read out at the counter."""
    return " ".join(code[i : i + 4] for i in range(0, len(code), 4))


def _code_hash(hasher: Hasher, code: str) -> str:
    return hasher.digest("shopping-code", code)


def _active_code_filter(now: datetime) -> Any:
    return and_(
        ShoppingCode.used_at.is_(None),
        ShoppingCode.voided_at.is_(None),
        ShoppingCode.expires_at > now,
    )


async def issue_code(
    session: AsyncSession, beneficiary: Beneficiary, hasher: Hasher, now: datetime
) -> IssuedCode:
    """A new 12-digit code for the family, valid 10 minutes; it voids any older one."""
    if not beneficiary.is_bpnt:
        return IssuedCode(CodeResult.NOT_BPNT)
    _, locked, frozen = await wallet_state(session, beneficiary.id)
    if locked or frozen:
        return IssuedCode(CodeResult.NOT_PROCESSABLE)
    await session.execute(
        update(ShoppingCode)
        .where(ShoppingCode.beneficiary_id == beneficiary.id, _active_code_filter(now))
        .values(voided_at=now)
    )
    while True:  # no two families may hold the same active code
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if code.startswith("0"):  # people drop leading zeros; and it reads like a number
            continue
        taken = await session.scalar(
            select(ShoppingCode.id).where(
                ShoppingCode.code_hash == _code_hash(hasher, code), _active_code_filter(now)
            )
        )
        if taken is None:
            break
    expires = now + CODE_TTL
    session.add(
        ShoppingCode(
            beneficiary_id=beneficiary.id,
            code_hash=_code_hash(hasher, code),
            created_at=now,
            expires_at=expires,
        )
    )
    await session.flush()
    return IssuedCode(CodeResult.ISSUED, code, expires)


async def void_codes(session: AsyncSession, beneficiary_id: int, now: datetime) -> None:
    """Cancel the family's live codes (shown on a phone it no longer holds, say)."""
    await session.execute(
        update(ShoppingCode)
        .where(
            ShoppingCode.beneficiary_id == beneficiary_id,
            ShoppingCode.used_at.is_(None),
            ShoppingCode.voided_at.is_(None),
        )
        .values(voided_at=now)
    )


# ---------------------------------------------------------------------------
# Finding the family at the counter


class LookupResult(StrEnum):
    FOUND = "found"
    # A wrong, expired, used or voided code, a code or card of another regency, an unknown
    # KKS number, wrong NIK digits: all read the same to the agent.
    INVALID = "invalid"
    NOT_PROCESSABLE = "not_processable"  # locked by the family or frozen by a dispute
    EWARONG_INACTIVE = "ewarong_inactive"
    USES_CODES = "uses_codes"  # a KKS number of a family on Telegram: it shows a code
    KKS_CAP = "kks_cap"  # this month's redemptions by KKS number alone are used up


@dataclass(frozen=True)
class FamilyAtCounter:
    """All an agent may see of a family: a masked name and the balance."""

    result: LookupResult
    beneficiary_id: int | None = None
    masked_name: str = ""
    balance: int = 0
    shopping_code_id: int | None = None
    agent_attested: bool = False


def regency_of(region_code: str) -> str:
    return region_code[:REGENCY_CODE_LENGTH]


def kks_month(now: datetime, region_code: str) -> str:
    """The month (`YYYY-MM`, in the e-Warong's time zone) KKS-only redemptions count in."""
    return now.astimezone(timezone_for(region_code)).strftime("%Y-%m")


async def _at_counter(
    session: AsyncSession, beneficiary: Beneficiary | None, code_id: int | None, attested: bool
) -> FamilyAtCounter:
    if beneficiary is None or not beneficiary.is_bpnt:
        return FamilyAtCounter(LookupResult.INVALID)
    balance, locked, frozen = await wallet_state(session, beneficiary.id)
    if locked or frozen:
        return FamilyAtCounter(LookupResult.NOT_PROCESSABLE)
    return FamilyAtCounter(
        LookupResult.FOUND,
        beneficiary_id=beneficiary.id,
        masked_name=mask_name(beneficiary.name),
        balance=balance,
        shopping_code_id=code_id,
        agent_attested=attested,
    )


async def find_by_code(
    session: AsyncSession, code: str, hasher: Hasher, now: datetime, ewarong: EWarong
) -> FamilyAtCounter:
    """The family holding this active code, if it lives in the e-Warong's regency."""
    if not ewarong.active:
        return FamilyAtCounter(LookupResult.EWARONG_INACTIVE)
    if len(code) != CODE_DIGITS or not code.isdecimal():
        return FamilyAtCounter(LookupResult.INVALID)
    row = (
        await session.execute(
            select(ShoppingCode.id, Beneficiary)
            .join(Beneficiary, Beneficiary.id == ShoppingCode.beneficiary_id)
            .where(
                ShoppingCode.code_hash == _code_hash(hasher, code),
                _active_code_filter(now),
                Beneficiary.village_code.startswith(regency_of(ewarong.village_code)),
            )
        )
    ).first()
    if row is None:
        return FamilyAtCounter(LookupResult.INVALID)
    return await _at_counter(session, row[1], row[0], attested=False)


async def _is_linked(session: AsyncSession, beneficiary_id: int) -> bool:
    return (
        await session.scalar(
            select(Account.telegram_id).where(Account.beneficiary_id == beneficiary_id)
        )
        is not None
    )


async def kks_used_this_month(session: AsyncSession, beneficiary_id: int, month: str) -> int:
    wallet = await session.get(BpntWallet, beneficiary_id, populate_existing=True)
    return wallet.kks_count if wallet is not None and wallet.kks_month == month else 0


async def find_by_kks(
    session: AsyncSession,
    kks_hash: str,
    nik_last4: str,
    ewarong: EWarong,
    *,
    agent: int,
    now: datetime,
    monthly_cap: int,
) -> FamilyAtCounter:
    """A family without Telegram, by its KKS card number (hashed) and the last four digits
    of the NIK on the holder's KTP: the card alone shows and debits nothing.

    Refused for families on Telegram (they show a code), for cards of another regency,
    and past `monthly_cap` such redemptions this month. Every lookup is audited (without
    the numbers); an unknown card and wrong digits read the same.
    """
    found = await _kks_lookup(session, kks_hash, nik_last4, ewarong, now, monthly_cap)
    await audit.record(
        session, "redemption.kks_lookup", actor=agent, subject_type="ewarong",
        subject_id=ewarong.code, result=found.result.value, beneficiary=found.beneficiary_id,
    )  # fmt: skip
    return found


async def _kks_lookup(
    session: AsyncSession,
    kks_hash: str,
    nik_last4: str,
    ewarong: EWarong,
    now: datetime,
    monthly_cap: int,
) -> FamilyAtCounter:
    if not ewarong.active:
        return FamilyAtCounter(LookupResult.EWARONG_INACTIVE)
    beneficiary = await session.scalar(
        select(Beneficiary).where(Beneficiary.kks_hash == kks_hash).limit(1)
    )
    if (
        beneficiary is None
        or not beneficiary.is_bpnt
        or not secrets.compare_digest(beneficiary.nik_last4.encode(), nik_last4.encode())
        or regency_of(beneficiary.village_code) != regency_of(ewarong.village_code)
    ):
        return FamilyAtCounter(LookupResult.INVALID)
    if await _is_linked(session, beneficiary.id):
        return FamilyAtCounter(LookupResult.USES_CODES)
    month = kks_month(now, ewarong.village_code)
    if await kks_used_this_month(session, beneficiary.id, month) >= monthly_cap:
        return FamilyAtCounter(LookupResult.KKS_CAP)
    return await _at_counter(session, beneficiary, None, attested=True)


# ---------------------------------------------------------------------------
# Baskets


@dataclass(frozen=True)
class BasketLine:
    item: str  # one of FOOD_ITEMS, or "total" when the agent typed only the total
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
    # For agent-attested (KKS number) redemptions: the month they count in (`kks_month()`)
    # and how many a family may have in it. The default cap refuses them all.
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


async def _consume_code(session: AsyncSession, code_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(ShoppingCode)
        .where(ShoppingCode.id == code_id, _active_code_filter(now))
        .values(used_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def _release_code(session: AsyncSession, code_id: int) -> None:
    await session.execute(
        update(ShoppingCode).where(ShoppingCode.id == code_id).values(used_at=None)
    )


def _kks_allowed(draft: RedemptionDraft) -> ColumnElement[bool]:
    """For an agent-attested redemption: under the monthly cap, and not a family that uses
    Telegram codes. Read from the wallet row the debit locks, so concurrent ones count."""
    return and_(
        or_(
            BpntWallet.kks_month.is_(None),
            BpntWallet.kks_month != draft.kks_month,
            BpntWallet.kks_count < draft.kks_cap,
        ),
        ~exists().where(Account.beneficiary_id == draft.beneficiary_id),
    )


async def _debit(session: AsyncSession, draft: RedemptionDraft) -> int | None:
    """Take the total from the wallet in one statement that cannot overdraw, only for an
    active e-Warong (and within the KKS rules); the new balance, None when refused."""
    conditions = [
        BpntWallet.beneficiary_id == draft.beneficiary_id,
        BpntWallet.balance >= draft.total,
        BpntWallet.locked.is_(False),
        BpntWallet.frozen.is_(False),
        exists().where(EWarong.code == draft.ewarong_code, EWarong.active.is_(True)),
    ]
    values: dict[Any, Any] = {BpntWallet.balance: BpntWallet.balance - draft.total}
    if draft.agent_attested:
        conditions.append(_kks_allowed(draft))
        values[BpntWallet.kks_count] = case(
            (BpntWallet.kks_month == draft.kks_month, BpntWallet.kks_count + 1), else_=1
        )
        values[BpntWallet.kks_month] = draft.kks_month
    return await session.scalar(
        update(BpntWallet).where(*conditions).values(values).returning(BpntWallet.balance)
    )


async def _credit_back(session: AsyncSession, draft: RedemptionDraft) -> None:
    """Undo this transaction's own debit (a duplicate found after it); never seen outside."""
    values: dict[Any, Any] = {BpntWallet.balance: BpntWallet.balance + draft.total}
    if draft.agent_attested:
        values[BpntWallet.kks_count] = BpntWallet.kks_count - 1
    await session.execute(
        update(BpntWallet).where(BpntWallet.beneficiary_id == draft.beneficiary_id).values(values)
    )


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
    _, locked, frozen = await wallet_state(session, draft.beneficiary_id)
    if locked or frozen:
        return ConfirmOutcome(ConfirmResult.NOT_PROCESSABLE)
    if draft.agent_attested and (
        await _is_linked(session, draft.beneficiary_id)
        or await kks_used_this_month(session, draft.beneficiary_id, draft.kks_month)
        >= draft.kks_cap
    ):
        return ConfirmOutcome(ConfirmResult.KKS_REFUSED)
    return ConfirmOutcome(ConfirmResult.INSUFFICIENT)


# On PostgreSQL the happy path is ONE statement (data-modifying CTEs): use the code,
# debit, claim the key, write the ledger and audit rows. Each step only runs on the
# previous step's RETURNING, so the order and the guards are the same as below.
_CONFIRM_PG = text(
    """
WITH code AS (
    UPDATE shopping_codes SET used_at = :now
    WHERE id = :code_id AND used_at IS NULL AND voided_at IS NULL AND expires_at > :now
    RETURNING id
), debit AS (
    UPDATE bpnt_wallets SET balance = balance - :total,
        kks_count = CASE WHEN NOT CAST(:attested AS BOOLEAN) THEN kks_count
                         WHEN kks_month = CAST(:month AS VARCHAR) THEN kks_count + 1
                         ELSE 1 END,
        kks_month = CASE WHEN CAST(:attested AS BOOLEAN) THEN CAST(:month AS VARCHAR)
                         ELSE kks_month END
    WHERE beneficiary_id = :beneficiary_id AND balance >= :total
      AND NOT locked AND NOT frozen
      AND (CAST(:code_id AS BIGINT) IS NULL OR EXISTS (SELECT 1 FROM code))
      AND EXISTS (SELECT 1 FROM ewarongs WHERE code = :ewarong_code AND active)
      AND (NOT CAST(:attested AS BOOLEAN) OR (
            (kks_month IS DISTINCT FROM CAST(:month AS VARCHAR)
             OR kks_count < CAST(:cap AS INTEGER))
            AND NOT EXISTS (SELECT 1 FROM accounts WHERE beneficiary_id = :beneficiary_id)))
    RETURNING balance
), claim AS (
    INSERT INTO redemptions (idempotency_key, ewarong_code, agent_telegram_id,
        beneficiary_id, shopping_code_id, agent_attested, items, total, balance_after,
        created_at)
    SELECT :key, :ewarong_code, :agent, :beneficiary_id, :code_id, :attested,
        CAST(:items AS JSON), :total, debit.balance, :now
    FROM debit
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, balance_after
), ledger AS (
    INSERT INTO ledger_entries (beneficiary_id, kind, amount, balance_after,
        idempotency_key, redemption_id, reference, created_at)
    SELECT :beneficiary_id, 'redemption', -CAST(:total AS BIGINT), claim.balance_after,
        'redemption:' || :key, claim.id, :ewarong_code, :now
    FROM claim
    RETURNING id
), audited AS (
    INSERT INTO audit_events (created_at, actor_telegram_id, action, subject_type,
        subject_id, details)
    SELECT :now, :agent, 'redemption.confirmed', 'redemption', CAST(claim.id AS TEXT),
        CAST(:details AS JSON)
    FROM claim
)
SELECT (SELECT COUNT(*) FROM code), (SELECT balance FROM debit), (SELECT id FROM claim)
"""
)


async def _confirm_postgresql(
    session: AsyncSession, draft: RedemptionDraft, now: datetime
) -> tuple[bool, int | None, int | None]:
    """(code used, balance after the debit, redemption id) from the one-statement path."""
    row = (
        await session.execute(
            _CONFIRM_PG,
            {
                "now": now,
                "code_id": draft.shopping_code_id,
                "total": draft.total,
                "beneficiary_id": draft.beneficiary_id,
                "key": draft.key,
                "ewarong_code": draft.ewarong_code,
                "agent": draft.agent_telegram_id,
                "attested": draft.agent_attested,
                "month": draft.kks_month,
                "cap": draft.kks_cap,
                "items": json.dumps(_items_json(draft.lines)),
                "details": json.dumps(_audit_details(draft)),
            },
        )
    ).one()
    return bool(row[0]), row[1], row[2]


def _audit_details(draft: RedemptionDraft) -> dict[str, Any]:
    return {"ewarong": draft.ewarong_code, "total": draft.total, "attested": draft.agent_attested}


async def _confirm_stepwise(
    session: AsyncSession, draft: RedemptionDraft, now: datetime
) -> tuple[bool, int | None, int | None]:
    """The same steps as `_CONFIRM_PG`, one statement each (SQLite)."""
    code_id = draft.shopping_code_id
    if code_id is not None and not await _consume_code(session, code_id, now):
        return False, None, None
    balance = await _debit(session, draft)
    if balance is None:
        return True, None, None
    redemption_id = await _claim(session, draft, balance, now)
    if redemption_id is None:
        return True, balance, None
    await session.execute(
        insert(LedgerEntry.__table__).values(
            beneficiary_id=draft.beneficiary_id,
            kind=REDEMPTION,
            amount=-draft.total,
            balance_after=balance,
            idempotency_key=f"redemption:{draft.key}",
            redemption_id=redemption_id,
            reference=draft.ewarong_code,
            created_at=now,
        )
    )
    await audit.record_fast(
        session, "redemption.confirmed", actor=draft.agent_telegram_id,
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
            await _credit_back(session, draft)
        if code_used and draft.shopping_code_id is not None:
            await _release_code(session, draft.shopping_code_id)
        return await _why_refused(session, draft, now)
    assert balance is not None
    # A detached copy of the stored row, for receipts (no extra SELECT).
    redemption = Redemption(id=redemption_id, **_redemption_row(draft, balance, now))
    return ConfirmOutcome(ConfirmResult.CONFIRMED, redemption)


# ---------------------------------------------------------------------------
# After the fact: receipts, disputes, reversals


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


class DisputeResult(StrEnum):
    OPENED = "opened"
    ALREADY = "already"
    NOT_YOURS = "not_yours"


async def dispute(
    session: AsyncSession, redemption_id: int, beneficiary_id: int, actor: int, now: datetime
) -> DisputeResult:
    """ "Bukan saya": flag the transaction for admins and freeze the family's code flow."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None or redemption.beneficiary_id != beneficiary_id:
        return DisputeResult.NOT_YOURS
    wallet = await _wallet(session, beneficiary_id)  # before reading the dispute state
    await session.refresh(redemption)
    if redemption.disputed_at is not None or redemption.reversed_at is not None:
        return DisputeResult.ALREADY  # reported before, or already given back
    redemption.disputed_at = now
    wallet.frozen = True
    await session.execute(
        update(ShoppingCode)
        .where(ShoppingCode.beneficiary_id == beneficiary_id, _active_code_filter(now))
        .values(voided_at=now)
    )
    await audit.record(
        session, "redemption.disputed", actor=actor, subject_type="redemption",
        subject_id=redemption_id,
    )  # fmt: skip
    await session.flush()
    return DisputeResult.OPENED


async def open_disputes(session: AsyncSession, limit: int = 20) -> list[Redemption]:
    return list(
        await session.scalars(
            select(Redemption)
            .where(Redemption.disputed_at.is_not(None), Redemption.dispute_resolved_at.is_(None))
            .order_by(Redemption.disputed_at)
            .limit(limit)
        )
    )


async def _unfreeze_if_clear(session: AsyncSession, beneficiary_id: int) -> None:
    """Unfreeze the family when no dispute of it is open; the caller holds the wallet lock
    (taken before it closed its dispute), so a dispute opened meanwhile is counted."""
    still_open = await session.scalar(
        select(func.count())
        .select_from(Redemption)
        .where(
            Redemption.beneficiary_id == beneficiary_id,
            Redemption.disputed_at.is_not(None),
            Redemption.dispute_resolved_at.is_(None),
        )
    )
    if not still_open:
        wallet = await _wallet(session, beneficiary_id)
        wallet.frozen = False


class ReversalResult(StrEnum):
    REVERSED = "reversed"
    ALREADY = "already"
    NOT_FOUND = "not_found"
    NO_REASON = "no_reason"
    NOT_DISPUTED = "not_disputed"  # only a sale the family disputed, still open, is reversed


def _open_dispute() -> ColumnElement[bool]:
    return and_(
        Redemption.disputed_at.is_not(None),
        Redemption.dispute_resolved_at.is_(None),
        Redemption.reversed_at.is_(None),
    )


async def is_open_dispute(session: AsyncSession, redemption_id: int) -> bool:
    return (
        await session.scalar(
            select(Redemption.id).where(Redemption.id == redemption_id, _open_dispute())
        )
        is not None
    )


async def reverse(
    session: AsyncSession, redemption_id: int, *, admin: int, reason: str, now: datetime
) -> ReversalResult:
    """Give the money of a disputed sale back as a new ledger entry (never an edit), and
    close its dispute. Only an open dispute can be reversed: the condition is part of the
    UPDATE that claims the reversal, so no forged or replayed button gets around it."""
    reason = " ".join(storable(reason).split())[:500]
    if not reason:
        return ReversalResult.NO_REASON
    found = await session.get(Redemption, redemption_id)
    if found is None:
        return ReversalResult.NOT_FOUND
    await _wallet(session, found.beneficiary_id)  # the same lock order as dispute/dismiss
    claimed = await session.execute(
        update(Redemption)
        .where(Redemption.id == redemption_id, _open_dispute())
        .values(reversed_at=now, reversal_reason=reason, reversed_by=admin)
    )
    redemption = await session.get(Redemption, redemption_id, populate_existing=True)
    assert redemption is not None
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return ReversalResult.ALREADY if redemption.reversed_at else ReversalResult.NOT_DISPUTED
    balance = await session.scalar(
        update(BpntWallet)
        .where(BpntWallet.beneficiary_id == redemption.beneficiary_id)
        .values(balance=BpntWallet.balance + redemption.total)
        .returning(BpntWallet.balance)
    )
    session.add(
        LedgerEntry(
            beneficiary_id=redemption.beneficiary_id,
            kind=REDEMPTION_REVERSAL,
            amount=redemption.total,
            balance_after=balance,
            idempotency_key=f"redemption-reversal:{redemption.id}",
            redemption_id=redemption.id,
            reference=redemption.ewarong_code,
            created_at=now,
        )
    )
    redemption.dispute_resolved_at = now
    await session.flush()
    await _unfreeze_if_clear(session, redemption.beneficiary_id)
    await audit.record(
        session, "redemption.reversed", actor=admin, subject_type="redemption",
        subject_id=redemption.id, total=redemption.total, reason=reason,
    )  # fmt: skip
    await session.flush()
    return ReversalResult.REVERSED


async def dismiss_dispute(
    session: AsyncSession, redemption_id: int, *, admin: int, now: datetime
) -> bool:
    """The admin found the transaction genuine: close the dispute and unfreeze the family
    (unless another of its disputes is open)."""
    redemption = await session.get(Redemption, redemption_id)
    if redemption is None:
        return False
    await _wallet(session, redemption.beneficiary_id)  # before counting open disputes
    await session.refresh(redemption)
    if redemption.disputed_at is None or redemption.dispute_resolved_at or redemption.reversed_at:
        return False
    redemption.dispute_resolved_at = now
    await session.flush()
    await _unfreeze_if_clear(session, redemption.beneficiary_id)
    await audit.record(
        session, "redemption.dispute_dismissed", actor=admin, subject_type="redemption",
        subject_id=redemption_id,
    )  # fmt: skip
    await session.flush()
    return True


# ---------------------------------------------------------------------------
# Reports


@dataclass(frozen=True)
class DayReport:
    ewarong: EWarong
    day: date
    redemptions: list[Redemption] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Money taken that day, net of reversals."""
        return sum(r.total for r in self.redemptions if r.reversed_at is None)


def _day_bounds(day: date, region_code: str) -> tuple[datetime, datetime]:
    zone = timezone_for(region_code)
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, start + timedelta(days=1)


async def day_report(session: AsyncSession, ewarong: EWarong, day: date) -> DayReport:
    """The e-Warong's redemptions on `day` in its own regional time zone."""
    start, end = _day_bounds(day, ewarong.village_code)
    rows = await session.scalars(
        select(Redemption)
        .where(
            Redemption.ewarong_code == ewarong.code,
            Redemption.created_at >= start,
            Redemption.created_at < end,
        )
        .order_by(Redemption.id)
    )
    return DayReport(ewarong, day, list(rows))


def local_day(now: datetime, region_code: str) -> date:
    return now.astimezone(timezone_for(region_code)).date()


CSV_COLUMNS = (
    "redemption_id", "time_local", "ewarong_code", "ewarong_name", "family",
    "agent_attested", "items", "total", "balance_after", "status", "ledger_entry_id",
)  # fmt: skip


def csv_cell(value: object) -> str:
    """Text for a CSV cell that a spreadsheet shows literally (no formula injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def export_csv(session: AsyncSession, report: DayReport) -> bytes:
    """The day's redemptions as CSV; its totals reconcile to the ledger's debit entries."""
    ids = [r.id for r in report.redemptions]
    entries = {
        entry.redemption_id: entry
        for entry in await session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.redemption_id.in_(ids), LedgerEntry.kind == REDEMPTION
            )
        )
    }
    names = dict(
        (
            await session.execute(
                select(Beneficiary.id, Beneficiary.name).where(
                    Beneficiary.id.in_({r.beneficiary_id for r in report.redemptions})
                )
            )
        ).all()
    )
    zone = timezone_for(report.ewarong.village_code)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in report.redemptions:
        items = ";".join(f"{i['item']}:{i['quantity']}x{i['unit_price']}" for i in r.items)
        writer.writerow(
            csv_cell(value)
            for value in (
                r.id,
                r.created_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"),
                report.ewarong.code,
                report.ewarong.name,
                mask_name(names.get(r.beneficiary_id, "")),
                "yes" if r.agent_attested else "no",
                items,
                r.total,
                r.balance_after,
                "reversed" if r.reversed_at else ("disputed" if r.disputed_at else "confirmed"),
                entries[r.id].id if r.id in entries else "",
            )
        )
    return buffer.getvalue().encode("utf-8")
