"""e-Warong agents: a new transaction (code or KKS → basket → confirm), today's list, CSV."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, metrics, texts, views
from bot.context import AppContext
from bot.filters import HasRole
from bot.formatting import long_date
from bot.keyboards import BasketCB, ConfirmCB
from bot.services import shopping
from bot.services.ewarongs import get_ewarong
from bot.services.identity import clean_digits
from bot.services.shopping import (
    BasketLine,
    ConfirmResult,
    LookupResult,
    RedemptionDraft,
    basket_total,
    parse_amount,
    parse_line,
)
from handlers.states import RedeemFlow
from models import Account

log = logging.getLogger(__name__)
MAX_INPUT = 64
# After a failed COMMIT, when to look (on a fresh connection) whether it happened.
AFTER_FAILED_COMMIT_DELAYS = (0.0, 0.5, 1.0, 2.0)


def _lines(data: dict[str, Any]) -> list[BasketLine]:
    return [BasketLine(*line) for line in data.get("lines", [])]


async def new_redemption(
    message: Message, state: FSMContext, account: Account, ctx: AppContext
) -> None:
    if locked := await ctx.code_lockout.locked_for(account.telegram_id):
        await message.answer(_too_many_codes(locked))
        return
    await state.clear()
    await state.set_state(RedeemFlow.identify)
    await message.answer(
        _(
            "Type the family's 6-digit <b>shopping code</b>. For a family without Telegram, "
            "type the 16-digit <b>KKS card number</b> instead."
        ),
        reply_markup=keyboards.cancel_only(_("Code or KKS number")),
    )


def _too_many_codes(seconds: float) -> str:
    return _("Too many wrong codes. New transactions are paused for {minutes} minutes.").format(
        minutes=max(1, round(seconds / 60))
    )


async def identify(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    agent_scope: str,
    locale: str,
    ctx: AppContext,
) -> None:
    text = message.text or ""
    digits = clean_digits(text) if len(text) <= MAX_INPUT else ""
    if len(digits) == 16 and digits.isdigit():
        family = await shopping.find_by_kks(session, digits, ctx.hasher)
    elif len(digits) == shopping.CODE_DIGITS and digits.isdigit():
        family = await shopping.find_by_code(session, digits, ctx.hasher, ctx.now())
    else:
        await message.answer(
            _("Please type a 6-digit shopping code or a 16-digit KKS number."),
            reply_markup=keyboards.cancel_only(_("Code or KKS number")),
        )
        return
    if family.result is LookupResult.NOT_PROCESSABLE:
        await state.clear()
        await message.answer(
            _("This transaction cannot be processed."), reply_markup=keyboards.main_menu(account)
        )
        return
    if family.result is LookupResult.INVALID:
        left = await ctx.code_lockout.fail(account.telegram_id)
        if left == 0:
            await state.clear()
            await message.answer(
                _too_many_codes(ctx.code_lockout.seconds), reply_markup=keyboards.main_menu(account)
            )
            return
        await message.answer(
            _(
                "That code or KKS number is not valid (wrong, expired or already used). "
                "{left} tries left."
            ).format(left=left)
        )
        return
    # Wrong tries are not forgiven by a success: that would allow endless guessing.
    ewarong = await get_ewarong(session, agent_scope)
    await state.set_state(RedeemFlow.basket)
    await state.update_data(
        ewarong=agent_scope,
        ewarong_name=ewarong.name if ewarong else agent_scope,
        family=family.beneficiary_id,
        masked=family.masked_name,
        balance=family.balance,
        code_id=family.shopping_code_id,
        attested=family.agent_attested,
        lines=[],
        key=shopping.new_idempotency_key(),
    )
    await message.answer(
        views.family_at_counter(family.masked_name, family.balance, family.agent_attested, locale),
        reply_markup=keyboards.cancel_only(),
    )
    await message.answer(
        views.basket(family.masked_name, family.balance, [], locale),
        reply_markup=keyboards.basket(shopping.FOOD_ITEMS),
    )


async def basket_press(
    query: CallbackQuery,
    callback_data: BasketCB,
    state: FSMContext,
    account: Account,
    locale: str,
) -> None:
    data = await state.get_data()
    if await state.get_state() != RedeemFlow.basket.state:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    action = callback_data.action
    if action == "item" and callback_data.item in shopping.FOOD_ITEMS:
        await state.update_data(item=callback_data.item)
        await state.set_state(RedeemFlow.item_amount)
        await query.answer()
        await _say(
            query,
            _(
                "{item}: type quantity × unit price (for example <code>2 x 15000</code>) "
                "or the amount (for example <code>30000</code>)."
            ).format(item=texts.FOOD_NAMES[callback_data.item]),
        )
    elif action == "total":
        await state.set_state(RedeemFlow.total_amount)
        await query.answer()
        await _say(query, _("Type the total amount of the purchase in rupiah, e.g. 150000."))
    elif action == "done":
        lines = _lines(data)
        if not lines:
            await query.answer(_("Add at least one item first."), show_alert=True)
            return
        await query.answer()
        await _show_summary(query, state, data, lines, locale)
    elif action == "cancel":
        await state.clear()
        await query.answer()
        await _back_to_menu(query, account, _("Transaction cancelled. Nothing was charged."))
    else:
        await query.answer(_("This button is no longer valid."), show_alert=True)


async def _back_to_menu(query: CallbackQuery, account: Account, text: str) -> None:
    """A short message that brings the agent's menu keyboard back."""
    if isinstance(query.message, Message):
        await query.message.answer(text, reply_markup=keyboards.main_menu(account))


async def _say(query: CallbackQuery, text: str) -> None:
    if isinstance(query.message, Message):
        await query.message.answer(text)


async def _show_summary(
    query_or_message: CallbackQuery | Message,
    state: FSMContext,
    data: dict[str, Any],
    lines: list[BasketLine],
    locale: str,
) -> None:
    await state.set_state(RedeemFlow.summary)
    message = (
        query_or_message.message
        if isinstance(query_or_message, CallbackQuery)
        else query_or_message
    )
    assert isinstance(message, Message)
    await message.answer(
        views.redemption_summary(
            data["ewarong_name"], data["masked"], data["balance"], lines, locale
        ),
        reply_markup=keyboards.confirm_redemption(data["key"]),
    )


def _over_balance(data: dict[str, Any], lines: list[BasketLine], locale: str) -> str | None:
    from bot.formatting import money

    if basket_total(lines) > data["balance"]:
        return _("That is more than the available balance ({balance}).").format(
            balance=money(data["balance"], locale)
        )
    return None


async def item_amount(message: Message, state: FSMContext, locale: str) -> None:
    data = await state.get_data()
    line = parse_line(data["item"], message.text or "")
    if line is None:
        await message.answer(
            _("Please type a positive amount like <code>30000</code> or <code>2 x 15000</code>.")
        )
        return
    lines = [*_lines(data), line]
    if problem := _over_balance(data, lines, locale):
        await message.answer(problem)
        return
    await state.update_data(lines=[[x.item, x.quantity, x.unit_price] for x in lines])
    await state.set_state(RedeemFlow.basket)
    await message.answer(
        views.basket(data["masked"], data["balance"], lines, locale),
        reply_markup=keyboards.basket(shopping.FOOD_ITEMS),
    )


async def total_amount(message: Message, state: FSMContext, locale: str) -> None:
    data = await state.get_data()
    amount = parse_amount(message.text or "") if len(message.text or "") <= MAX_INPUT else None
    if amount is None:
        await message.answer(_("Please type a positive amount in rupiah, e.g. 150000."))
        return
    lines = [BasketLine("total", 1, amount)]
    if problem := _over_balance(data, lines, locale):
        await message.answer(problem)
        return
    await state.update_data(lines=[["total", 1, amount]])
    await _show_summary(message, state, data, lines, locale)


async def flow_wrong_input(message: Message) -> None:
    await message.answer(
        _("Please follow the step above: type the code or the amount as text, or use the buttons.")
    )


async def confirm_press(
    query: CallbackQuery,
    callback_data: ConfirmCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    agent_scope: str,
    locale: str,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await state.get_data()
    current = await state.get_state() == RedeemFlow.summary.state and data.get("key") == (
        callback_data.key
    )
    if not current:
        await _stale_confirm(query, session, callback_data.key, agent_scope)
        return
    if callback_data.action != "yes":
        await state.clear()
        await query.answer()
        await _close(query, _("Transaction cancelled. Nothing was charged."))
        await _back_to_menu(query, account, _("Ready for the next transaction."))
        return
    draft = RedemptionDraft(
        key=data["key"],
        ewarong_code=agent_scope,
        agent_telegram_id=account.telegram_id,
        beneficiary_id=data["family"],
        lines=tuple(_lines(data)),
        shopping_code_id=data.get("code_id"),
        agent_attested=bool(data.get("attested")),
    )
    outcome = await shopping.confirm(session, draft, ctx.now())
    receipt = None
    if outcome.redemption is not None and outcome.redemption.idempotency_key == draft.key:
        # Confirmed now, or by an earlier press of this summary whose answer was lost.
        receipt = await shopping.receipt(session, outcome.redemption)
    # The money is saved before anyone is told; from here on, messages are best effort
    # and a failed one can no longer undo a purchase both sides were shown.
    try:
        await session.commit()
    except Exception as error:  # the database went away during COMMIT: did it happen?
        log.warning("a redemption's commit failed: %s", type(error).__name__)
        await _rollback(session)
        known, receipt = await _receipt_after_failed_commit(ctx, draft.key)
        if receipt is None:  # the summary stays: Confirm again, never charged twice
            await query.answer()
            await _say(query, _not_through(known))
            return
    if outcome.result is ConfirmResult.CONFIRMED:
        metrics.REDEMPTIONS.inc()
    try:
        await state.clear()
    except Exception as error:  # Redis went away: the sale stands, the flow state expires
        log.warning("after a confirmation, clearing the flow failed: %s", type(error).__name__)
    try:
        await query.answer()
        if receipt is not None:
            await _close(query, views.receipt(receipt, data["masked"], locale))
            await _send_family_receipt(bot, i18n, receipt, data["masked"])
        else:
            await _close(query, _refusal(outcome.result))
        await _back_to_menu(query, account, _("Ready for the next transaction."))
    except Exception as error:
        log.warning("after a confirmation, a message failed: %s", type(error).__name__)


async def _rollback(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception as error:  # the connection is gone; the server rolled back itself
        log.warning("rollback failed: %s", type(error).__name__)


async def _receipt_after_failed_commit(
    ctx: AppContext, key: str
) -> tuple[bool, shopping.Receipt | None]:
    """Look the idempotency key up on a fresh connection, waiting a little for the
    database to come back: (whether we know, the receipt if it went through)."""
    for delay in AFTER_FAILED_COMMIT_DELAYS:
        await asyncio.sleep(delay)
        try:
            async with ctx.sessionmaker() as session:
                redemption = await shopping.redemption_by_key(session, key)
                if redemption is None:
                    return True, None
                return True, await shopping.receipt(session, redemption)
        except Exception as error:
            log.warning("checking a redemption after a failed commit: %s", type(error).__name__)
    return False, None


def _not_through(known: bool) -> str:
    if known:
        return _(
            "The transaction did not go through: nothing was charged. Press Confirm to try again."
        )
    return _(
        "We could not check whether the transaction went through. Press Confirm again "
        "in a moment: a transaction is never charged twice."
    )


def _refusal(result: ConfirmResult) -> str:
    return {
        ConfirmResult.ALREADY_CONFIRMED: _("This transaction was already confirmed."),
        ConfirmResult.INSUFFICIENT: _("The balance is not enough. Nothing was charged."),
        ConfirmResult.NOT_PROCESSABLE: _("This transaction cannot be processed."),
        ConfirmResult.CODE_INVALID: _(
            "The shopping code is no longer valid. Ask the family for a new code."
        ),
        ConfirmResult.EMPTY: _("Add at least one item first."),
    }[result]


async def _stale_confirm(
    query: CallbackQuery, session: AsyncSession, key: str, agent_scope: str
) -> None:
    """A press on an old summary: "already confirmed" if it was this e-Warong's, else invalid."""
    done = await shopping.redemption_by_key(session, key)
    if done is not None and done.ewarong_code == agent_scope:
        await query.answer(_("This transaction was already confirmed."), show_alert=True)
    else:
        await query.answer(_("This button is no longer valid."), show_alert=True)


async def _close(query: CallbackQuery, text: str) -> None:
    """Replace the summary (and its buttons) with the outcome."""
    if isinstance(query.message, Message):
        await query.message.edit_text(text)


async def _send_family_receipt(
    bot: Bot, i18n: I18n, receipt: shopping.Receipt, masked: str
) -> None:
    """The family's copy, in its language, with "Not me / report"."""
    if receipt.family_account is None:
        return
    locale = receipt.family_locale if receipt.family_locale in ("id", "en") else "id"
    with i18n.use_locale(locale):
        text = views.receipt(receipt, masked, locale)
        markup = keyboards.dispute_button(receipt.redemption.id)
    try:
        await bot.send_message(receipt.family_account, text, reply_markup=markup)
    except Exception as error:  # the family blocked the bot: the agent's receipt stands
        log.warning("family receipt not delivered: %s", type(error).__name__)


async def _todays_report(
    message: Message, session: AsyncSession, agent_scope: str, ctx: AppContext
) -> shopping.DayReport | None:
    """Today's report of the agent's e-Warong (its own time zone), or None after telling why."""
    ewarong = await get_ewarong(session, agent_scope)
    if ewarong is None:
        await message.answer(_("Your e-Warong is not in the register any more."))
        return None
    day = shopping.local_day(ctx.now(), ewarong.village_code)
    return await shopping.day_report(session, ewarong, day)


async def today(
    message: Message, session: AsyncSession, agent_scope: str, locale: str, ctx: AppContext
) -> None:
    if report := await _todays_report(message, session, agent_scope, ctx):
        await message.answer(views.day_report(report, locale))


async def export(
    message: Message, session: AsyncSession, agent_scope: str, locale: str, ctx: AppContext
) -> None:
    report = await _todays_report(message, session, agent_scope, ctx)
    if report is None:
        return
    ewarong, day = report.ewarong, report.day
    content = await shopping.export_csv(session, report)
    await message.answer_document(
        BufferedInputFile(content, filename=f"redemptions-{ewarong.code}-{day.isoformat()}.csv"),
        caption=_("Transactions of {day}: {count}").format(
            day=long_date(day, locale), count=len(report.redemptions)
        ),
    )


async def not_an_agent(message: Message) -> None:
    await message.answer(_("This menu is only for registered e-Warong agents."))


def create_router() -> Router:
    """Agent handlers; every one requires the agent role (its scope is the e-Warong code)."""
    router = Router(name="agent")
    agent = HasRole("agent")
    router.message.register(new_redemption, agent, F.text == texts.BTN_NEW_REDEMPTION)
    router.message.register(identify, agent, RedeemFlow.identify, F.text)
    router.message.register(item_amount, agent, RedeemFlow.item_amount, F.text)
    router.message.register(total_amount, agent, RedeemFlow.total_amount, F.text)
    router.message.register(flow_wrong_input, agent, StateFilter(RedeemFlow))
    router.callback_query.register(basket_press, agent, BasketCB.filter())
    router.callback_query.register(confirm_press, agent, ConfirmCB.filter())
    router.message.register(today, agent, F.text == texts.BTN_TODAY)
    router.message.register(export, agent, F.text == texts.BTN_EXPORT)
    for label in (texts.BTN_NEW_REDEMPTION, texts.BTN_TODAY, texts.BTN_EXPORT):
        router.message.register(not_an_agent, F.text == label)
    return router
