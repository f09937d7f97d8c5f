"""e-Warong agents: a new transaction (code or KKS → basket → confirm), today's list, CSV."""

from __future__ import annotations

import logging
import secrets
from html import escape
from typing import Any

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from infra import metrics
from models import Account, EWarong
from models.enums import Role
from services import Session
from services.bpnt import counter, redemptions, reports
from services.bpnt.codes import CODE_DIGITS
from services.bpnt.counter import KKS_DIGITS, FamilyAtCounter, LookupResult
from services.bpnt.ewarongs import get_ewarong
from services.bpnt.redemptions import (
    FOOD_ITEMS,
    TOTAL_ONLY,
    BasketLine,
    ConfirmResult,
    Durability,
    Receipt,
    RedemptionDraft,
    basket_total,
    parse_amount,
    parse_line,
)
from services.identity import clean_digits
from tg import keyboards, texts
from tg.callbacks import (
    Answer,
    AttestCB,
    BasketAction,
    BasketCB,
    ConfirmCB,
    add_stale_handler,
    alert,
)
from tg.context import AppContext
from tg.filters import HasRole
from tg.formatting import long_date, money
from tg.states import RedeemFlow
from tg.views import bpnt as views

log = logging.getLogger(__name__)
MAX_INPUT = 64


def _lines(data: dict[str, Any]) -> list[BasketLine]:
    return [BasketLine(*line) for line in data.get("lines", [])]


async def _active_ewarong(
    message: Message, state: FSMContext, session: Session, account: Account, code: str
) -> EWarong | None:
    """The agent's e-Warong, or None after saying it is deactivated (the flow ends)."""
    ewarong = await get_ewarong(session, code)
    if ewarong is not None and ewarong.active:
        return ewarong
    await state.clear()
    await message.answer(
        _("Your e-Warong is not active, so no transaction can be made. Please contact your admin."),
        reply_markup=keyboards.main_menu(account),
    )
    return None


async def new_redemption(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
    ctx: AppContext,
) -> None:
    if await _active_ewarong(message, state, session, account, agent_scope) is None:
        return
    if locked := await ctx.code_guard.locked_for(agent=account.telegram_id, ewarong=agent_scope):
        await message.answer(_too_many_codes(locked))
        return
    await state.clear()
    await state.set_state(RedeemFlow.identify)
    await message.answer(
        _(
            "Type the family's 12-digit <b>shopping code</b>. For a family without Telegram, "
            "type the 16-digit <b>KKS card number</b> instead."
        ),
        reply_markup=keyboards.cancel_only(_("Code or KKS number")),
    )


def _too_many_codes(seconds: float) -> str:
    return _("Too many wrong codes. New transactions are paused for {minutes} minutes.").format(
        minutes=max(1, round(seconds / 60))
    )


async def _wrong_try(
    message: Message,
    state: FSMContext,
    account: Account,
    agent_scope: str,
    ctx: AppContext,
    result: LookupResult = LookupResult.INVALID,
) -> None:
    """A wrong code, or card and NIK digits (or a card that must not be used alone):
    counted for the agent, the e-Warong and the country. Wrong tries are never forgiven
    by a success: that would allow endless guessing."""
    left = await ctx.code_guard.fail(agent=account.telegram_id, ewarong=agent_scope)
    if left == 0 or await ctx.code_guard.locked_for(agent=account.telegram_id, ewarong=agent_scope):
        await state.clear()
        await message.answer(
            _too_many_codes(ctx.code_guard.seconds), reply_markup=keyboards.main_menu(account)
        )
    elif result is LookupResult.INVALID:
        await state.set_state(RedeemFlow.identify)
        await message.answer(
            _(
                "That is not valid (a wrong, expired or used code; or a KKS card and NIK that "
                "do not match or are not for this area). {left} tries left. Type the code or "
                "the KKS number again."
            ).format(left=left),
            reply_markup=keyboards.cancel_only(_("Code or KKS number")),
        )
    else:
        await _refused_at_counter(message, state, account, result)


async def _refused_at_counter(
    message: Message, state: FSMContext, account: Account, result: LookupResult
) -> None:
    texts_ = {
        LookupResult.EWARONG_INACTIVE: _(
            "Your e-Warong is not active, so no transaction can be made. Please contact your admin."
        ),
        LookupResult.NOT_PROCESSABLE: _("This transaction cannot be processed."),
        LookupResult.USES_CODES: _(
            "This family uses the bot: ask them for the shopping code on their phone "
            "(menu <b>{button}</b>)."
        ).format(button=texts.BTN_SHOPPING_CODE),
        LookupResult.KKS_CAP: _(
            "This family has already used its purchases by KKS card this month. It can shop "
            "with a shopping code from the bot, or ask the admin."
        ),
    }
    await state.clear()
    await message.answer(texts_[result], reply_markup=keyboards.main_menu(account))


async def _usable_ewarong(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
    ctx: AppContext,
) -> EWarong | None:
    """The agent's e-Warong when it is active and no lockout holds, else None (told why)."""
    ewarong = await _active_ewarong(message, state, session, account, agent_scope)
    if ewarong is None:
        return None
    if locked := await ctx.code_guard.locked_for(agent=account.telegram_id, ewarong=agent_scope):
        await state.clear()
        await message.answer(_too_many_codes(locked), reply_markup=keyboards.main_menu(account))
        return None
    return ewarong


async def identify(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
    locale: str,
    ctx: AppContext,
) -> None:
    text = message.text or ""
    digits = clean_digits(text) if len(text) <= MAX_INPUT else ""
    if not digits.isdecimal() or len(digits) not in (CODE_DIGITS, KKS_DIGITS):
        await message.answer(
            _("Please type a 12-digit shopping code or a 16-digit KKS number."),
            reply_markup=keyboards.cancel_only(_("Code or KKS number")),
        )
        return
    ewarong = await _usable_ewarong(message, state, session, account, agent_scope, ctx)
    if ewarong is None:
        return
    if len(digits) == KKS_DIGITS:  # nothing is looked up before the NIK digits
        await state.set_state(RedeemFlow.kks_nik)
        await state.update_data(kks_hash=ctx.hasher.kks(digits))
        await message.answer(
            _(
                "Paying by KKS card: ask for the holder's KTP and type the <b>last 4 digits "
                "of the NIK</b> on it."
            ),
            reply_markup=keyboards.cancel_only(_("Last 4 digits of the NIK")),
        )
        return
    family = await counter.find_by_code(session, digits, ctx.hasher, ctx.now(), ewarong)
    await _at_counter(message, state, account, agent_scope, ewarong, family, locale, ctx)


async def kks_nik(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
    locale: str,
    ctx: AppContext,
) -> None:
    """The last 4 digits of the holder's NIK, with the card number typed before."""
    digits = clean_digits(message.text or "") if len(message.text or "") <= MAX_INPUT else ""
    if len(digits) != 4 or not digits.isdecimal():
        await message.answer(
            _("Please type the last 4 digits of the NIK on the holder's KTP."),
            reply_markup=keyboards.cancel_only(_("Last 4 digits of the NIK")),
        )
        return
    ewarong = await _usable_ewarong(message, state, session, account, agent_scope, ctx)
    if ewarong is None:
        return
    data = await state.get_data()
    family = await counter.find_by_kks(
        session, data["kks_hash"], digits, ewarong, agent=account.telegram_id, now=ctx.now(),
        monthly_cap=ctx.settings.kks_redemptions_per_month,
    )  # fmt: skip
    await _at_counter(message, state, account, agent_scope, ewarong, family, locale, ctx)


async def _at_counter(
    message: Message,
    state: FSMContext,
    account: Account,
    agent_scope: str,
    ewarong: EWarong,
    family: FamilyAtCounter,
    locale: str,
    ctx: AppContext,
) -> None:
    """After a lookup: a counted wrong try, a refusal, or the family (by card: first the
    agent attests the holder is present)."""
    if family.result in (LookupResult.INVALID, LookupResult.USES_CODES):
        await _wrong_try(message, state, account, agent_scope, ctx, family.result)
        return
    if family.result is not LookupResult.FOUND:
        await _refused_at_counter(message, state, account, family.result)
        return
    await state.set_data(
        {
            "ewarong": agent_scope, "ewarong_name": ewarong.name, "region": ewarong.village_code,
            "family": family.beneficiary_id, "lines": [], "key": redemptions.new_idempotency_key(),
            "masked": family.masked_name, "balance": family.balance,
            "code_id": family.shopping_code_id, "attested": family.agent_attested,
        }
    )  # fmt: skip
    if not family.agent_attested:
        await _open_basket(message, state, family, locale)
        return
    token = secrets.token_urlsafe(8)
    await state.set_state(RedeemFlow.kks_attest)
    await state.update_data(attest=token)
    await message.answer(
        _(
            "KPM: <b>{name}</b>. A purchase by KKS card only: confirm that the card holder is "
            "here in person and that the KTP belongs to them. You, the agent, are recorded "
            "as attesting it."
        ).format(name=escape(family.masked_name)),
        reply_markup=keyboards.attest_presence(token),
    )


async def _open_basket(
    message: Message, state: FSMContext, family: FamilyAtCounter, locale: str
) -> None:
    await state.set_state(RedeemFlow.basket)
    await message.answer(
        views.family_at_counter(family.masked_name, family.balance, family.agent_attested, locale),
        reply_markup=keyboards.cancel_only(),
    )
    await message.answer(
        views.basket(family.masked_name, family.balance, [], locale),
        reply_markup=keyboards.basket(FOOD_ITEMS),
    )


async def attest_press(
    query: CallbackQuery, callback_data: AttestCB, state: FSMContext, locale: str
) -> None:
    data = await state.get_data()
    current = await state.get_state() == RedeemFlow.kks_attest.state and secrets.compare_digest(
        str(data.get("attest", "")).encode(), callback_data.token.encode()
    )
    if not current:
        raise SkipHandler()
    if not isinstance(query.message, Message):
        return
    await query.message.edit_reply_markup(reply_markup=None)
    family = FamilyAtCounter(
        LookupResult.FOUND, beneficiary_id=data["family"], masked_name=data["masked"],
        balance=data["balance"], agent_attested=True,
    )  # fmt: skip
    await _open_basket(query.message, state, family, locale)


async def _basket_data(state: FSMContext) -> dict[str, Any]:
    """The flow's data when the basket is open; a press at any other step is stale."""
    if await state.get_state() != RedeemFlow.basket.state:
        raise SkipHandler()
    return await state.get_data()


async def item_press(query: CallbackQuery, callback_data: BasketCB, state: FSMContext) -> None:
    await _basket_data(state)
    if callback_data.item not in FOOD_ITEMS:
        raise SkipHandler()
    await state.update_data(item=callback_data.item)
    await state.set_state(RedeemFlow.item_amount)
    await _say(
        query,
        _(
            "{item}: type quantity × unit price (for example <code>2 x 15000</code>) "
            "or the amount (for example <code>30000</code>)."
        ).format(item=texts.FOOD_NAMES[callback_data.item]),
    )


async def total_press(query: CallbackQuery, state: FSMContext) -> None:
    await _basket_data(state)
    await state.set_state(RedeemFlow.total_amount)
    await _say(query, _("Type the total amount of the purchase in rupiah, e.g. 150000."))


async def done_press(
    query: CallbackQuery, callback_answer: CallbackAnswer, state: FSMContext, locale: str
) -> None:
    data = await _basket_data(state)
    lines = _lines(data)
    if not lines:
        alert(callback_answer, _("Add at least one item first."))
        return
    await _show_summary(query, state, data, lines, locale)


async def basket_cancel_press(query: CallbackQuery, state: FSMContext, account: Account) -> None:
    await _basket_data(state)
    await state.clear()
    await _back_to_menu(query, account, _("Transaction cancelled. Nothing was charged."))


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
        reply_markup=keyboards.basket(FOOD_ITEMS),
    )


async def total_amount(message: Message, state: FSMContext, locale: str) -> None:
    data = await state.get_data()
    amount = parse_amount(message.text or "") if len(message.text or "") <= MAX_INPUT else None
    if amount is None:
        await message.answer(_("Please type a positive amount in rupiah, e.g. 150000."))
        return
    lines = [BasketLine(TOTAL_ONLY, 1, amount)]
    if problem := _over_balance(data, lines, locale):
        await message.answer(problem)
        return
    await state.update_data(lines=[[TOTAL_ONLY, 1, amount]])
    await _show_summary(message, state, data, lines, locale)


async def flow_wrong_input(message: Message) -> None:
    await message.answer(
        _("Please follow the step above: type the code or the amount as text, or use the buttons.")
    )


async def _summary_data(
    callback_answer: CallbackAnswer,
    callback_data: ConfirmCB,
    state: FSMContext,
    session: Session,
    agent_scope: str,
) -> dict[str, Any] | None:
    """The flow's data when this press is on the summary being shown. A press on an old
    summary says "already confirmed" if it was this e-Warong's (None), else it is stale."""
    data = await state.get_data()
    shown = await state.get_state() == RedeemFlow.summary.state
    if shown and data.get("key") == callback_data.key:
        return data
    if await redemptions.confirmed_at(session, callback_data.key, agent_scope):
        alert(callback_answer, _("This transaction was already confirmed."))
        return None
    raise SkipHandler()


async def confirm_press(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: ConfirmCB,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
    locale: str,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await _summary_data(callback_answer, callback_data, state, session, agent_scope)
    if data is None:
        return
    draft = RedemptionDraft(
        key=data["key"],
        ewarong_code=agent_scope,
        agent_telegram_id=account.telegram_id,
        beneficiary_id=data["family"],
        lines=tuple(_lines(data)),
        shopping_code_id=data.get("code_id"),
        agent_attested=bool(data.get("attested")),
        kks_month=counter.kks_month(ctx.now(), data["region"]),
        kks_cap=ctx.settings.kks_redemptions_per_month,
    )
    # Saved (committed) before anyone is told; from here on, messages are best effort.
    done = await redemptions.confirm_durably(session, ctx.sessionmaker, draft, ctx.now())
    if done.durability is not Durability.SAVED:  # the summary stays: Confirm again
        await _say(query, _not_through(done.durability is Durability.NOT_THROUGH))
        return
    if done.result is ConfirmResult.CONFIRMED:
        metrics.REDEMPTIONS.inc()
    try:
        await state.clear()
    except Exception as error:  # Redis went away: the sale stands, the flow state expires
        log.warning("after a confirmation, clearing the flow failed: %s", type(error).__name__)
    try:
        if done.receipt is not None:
            await _close(query, views.receipt(done.receipt, data["masked"], locale))
            await _send_family_receipt(bot, i18n, done.receipt, data["masked"])
        else:
            await _close(query, _refusal(done.result))
        await _back_to_menu(query, account, _("Ready for the next transaction."))
    except Exception as error:
        log.warning("after a confirmation, a message failed: %s", type(error).__name__)


async def cancel_press(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: ConfirmCB,
    state: FSMContext,
    session: Session,
    account: Account,
    agent_scope: str,
) -> None:
    data = await _summary_data(callback_answer, callback_data, state, session, agent_scope)
    if data is None:
        return
    await state.clear()
    await _close(query, _("Transaction cancelled. Nothing was charged."))
    await _back_to_menu(query, account, _("Ready for the next transaction."))


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
        ConfirmResult.EWARONG_INACTIVE: _(
            "Your e-Warong is not active, so no transaction can be made. Please contact your admin."
        ),
        ConfirmResult.KKS_REFUSED: _(
            "This family cannot pay by KKS card now (it uses the bot, or has used its "
            "purchases by KKS card this month). Nothing was charged."
        ),
    }[result]


async def _close(query: CallbackQuery, text: str) -> None:
    """Replace the summary (and its buttons) with the outcome."""
    if isinstance(query.message, Message):
        await query.message.edit_text(text)


async def _send_family_receipt(bot: Bot, i18n: I18n, receipt: Receipt, masked: str) -> None:
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
    message: Message, session: Session, agent_scope: str, ctx: AppContext
) -> reports.DayReport | None:
    """Today's report of the agent's e-Warong (its own time zone), or None after telling why."""
    ewarong = await get_ewarong(session, agent_scope)
    if ewarong is None:
        await message.answer(_("Your e-Warong is not in the register any more."))
        return None
    day = reports.local_day(ctx.now(), ewarong.village_code)
    return await reports.day_report(session, ewarong, day)


async def today(
    message: Message, session: Session, agent_scope: str, locale: str, ctx: AppContext
) -> None:
    if report := await _todays_report(message, session, agent_scope, ctx):
        await message.answer(views.day_report(report, locale))


async def export(
    message: Message, session: Session, agent_scope: str, locale: str, ctx: AppContext
) -> None:
    report = await _todays_report(message, session, agent_scope, ctx)
    if report is None:
        return
    ewarong, day = report.ewarong, report.day
    content = await reports.export_csv(session, report)
    await message.answer_document(
        BufferedInputFile(content, filename=f"redemptions-{ewarong.code}-{day.isoformat()}.csv"),
        caption=_("Number of transactions on {day}: {count}").format(
            day=long_date(day, locale), count=len(report.redemptions)
        ),
    )


async def not_an_agent(message: Message) -> None:
    await message.answer(_("This menu is only for registered e-Warong agents."))


def create_router() -> Router:
    """Agent handlers; every one requires the agent role (its scope is the e-Warong code)."""
    router = Router(name="agent")
    agent = HasRole(Role.AGENT)
    router.message.register(new_redemption, agent, F.text == texts.BTN_NEW_REDEMPTION)
    router.message.register(identify, agent, RedeemFlow.identify, F.text)
    router.message.register(kks_nik, agent, RedeemFlow.kks_nik, F.text)
    router.callback_query.register(attest_press, agent, AttestCB.filter())
    router.message.register(item_amount, agent, RedeemFlow.item_amount, F.text)
    router.message.register(total_amount, agent, RedeemFlow.total_amount, F.text)
    router.message.register(flow_wrong_input, agent, StateFilter(RedeemFlow))
    basket = BasketCB.filter
    router.callback_query.register(item_press, agent, basket(F.action == BasketAction.ITEM))
    router.callback_query.register(total_press, agent, basket(F.action == BasketAction.TOTAL))
    router.callback_query.register(done_press, agent, basket(F.action == BasketAction.DONE))
    router.callback_query.register(
        basket_cancel_press, agent, basket(F.action == BasketAction.CANCEL)
    )
    router.callback_query.register(confirm_press, agent, ConfirmCB.filter(F.action == Answer.YES))
    router.callback_query.register(cancel_press, agent, ConfirmCB.filter(F.action == Answer.NO))
    router.message.register(today, agent, F.text == texts.BTN_TODAY)
    router.message.register(export, agent, F.text == texts.BTN_EXPORT)
    for label in (texts.BTN_NEW_REDEMPTION, texts.BTN_TODAY, texts.BTN_EXPORT):
        router.message.register(not_an_agent, F.text == label)
    add_stale_handler(router, AttestCB, BasketCB, ConfirmCB)
    return router
