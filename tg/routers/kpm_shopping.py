"""KPM side of BPNT shopping: one-time code, shopping lock, nearest e-Warong, disputes."""

from __future__ import annotations

import logging
from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from models import Account
from services import Session, accounts
from services.bpnt import codes, disputes, ledger
from services.bpnt.codes import CodeResult
from services.bpnt.disputes import DisputeResult
from services.bpnt.ewarongs import nearest
from tg import keyboards, texts
from tg.callbacks import (
    Answer,
    DisputeCB,
    DisputeConfirmCB,
    LockCB,
    add_stale_handler,
    alert,
)
from tg.context import AppContext
from tg.formatting import local_datetime, money
from tg.states import NearbyFlow
from tg.views import bpnt as views

log = logging.getLogger(__name__)


async def _linked_or_explain(message: Message, session: Session, account: Account):
    beneficiary = await accounts.linked_beneficiary(session, account)
    if beneficiary is None:
        await message.answer(
            _("Your account is not linked yet. Press <b>{link}</b> first.").format(
                link=texts.BTN_LINK
            ),
            reply_markup=keyboards.main_menu(account),
        )
    return beneficiary


async def shopping_code(
    message: Message, session: Session, account: Account, locale: str, ctx: AppContext
) -> None:
    beneficiary = await _linked_or_explain(message, session, account)
    if beneficiary is None:
        return
    issued = await codes.issue_code(session, beneficiary, ctx.hasher, ctx.now())
    if issued.result is CodeResult.NOT_BPNT:
        await message.answer(_("Shopping codes are for BPNT/Sembako families only."))
        return
    if issued.result is CodeResult.NOT_PROCESSABLE:
        await message.answer(
            _(
                "Shopping is locked for your family (by you, or while a reported transaction "
                "is checked). Use <b>{lock}</b> to unlock it, or wait for the check."
            ).format(lock=texts.BTN_SHOPPING_LOCK)
        )
        return
    assert issued.code is not None and issued.expires_at is not None
    await message.answer(
        _(
            "Your shopping code: <b>{code}</b>\n"
            "Valid for 10 minutes (until {until}). Show it to the e-Warong agent when you pay. "
            "Never give it to anyone else. A new code cancels this one."
        ).format(
            code=codes.shown_code(issued.code),
            until=local_datetime(issued.expires_at, locale, beneficiary.village_code),
        ),
        reply_markup=keyboards.main_menu(account),
    )


async def shopping_lock(message: Message, session: Session, account: Account) -> None:
    beneficiary = await _linked_or_explain(message, session, account)
    if beneficiary is None:
        return
    _balance, locked, _frozen = await ledger.wallet_state(session, beneficiary.id)
    text = (
        _("Shopping is <b>locked</b>: no code or KKS number gets any purchase through.")
        if locked
        else _(
            "Shopping is <b>open</b>. Lock it if your KKS card is lost or held by someone "
            "else: then no purchase goes through until you unlock it."
        )
    )
    await message.answer(text, reply_markup=keyboards.lock_choice(locked))


async def lock_press(
    query: CallbackQuery, callback_data: LockCB, session: Session, account: Account
) -> None:
    if account.beneficiary_id is None:
        raise SkipHandler()
    await ledger.set_family_lock(
        session, account.beneficiary_id, callback_data.locked, actor=account.telegram_id
    )
    text = (
        _("Shopping is now locked. Press again to unlock when you are ready.")
        if callback_data.locked
        else _("Shopping is open again.")
    )
    markup = keyboards.lock_choice(callback_data.locked)
    message = query.message if isinstance(query.message, Message) else None
    # A double press finds the message already saying so: Telegram refuses an edit that
    # changes nothing ("message is not modified"), so leave it alone.
    shown = message.reply_markup.model_dump() if message and message.reply_markup else None
    if message and (message.text != text or shown != markup.model_dump()):
        try:
            await message.edit_text(text, reply_markup=markup)
        except TelegramBadRequest as error:
            if "message is not modified" not in error.message:
                raise


async def nearby_ask(message: Message, state: FSMContext) -> None:
    await state.set_state(NearbyFlow.location)
    await message.answer(
        _("Share your location with the button below and I will show the 3 nearest e-Warongs."),
        reply_markup=keyboards.share_location(),
    )


async def nearby_answer(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account | None,
    locale: str,
    ctx: AppContext,
) -> None:
    assert message.location is not None
    await state.clear()
    radius = ctx.settings.nearest_ewarong_km
    location = message.location
    found = await nearest(session, location.latitude, location.longitude, 3, max_km=radius)
    if not found:
        await message.answer(
            views.no_ewarong_nearby(radius, locale), reply_markup=keyboards.main_menu(account)
        )
        return
    await message.answer(views.nearby(found, locale), reply_markup=keyboards.main_menu(account))
    first = found[0]
    await message.answer_venue(
        latitude=first.latitude, longitude=first.longitude, title=first.name, address=first.address
    )


async def nearby_wrong(message: Message) -> None:
    await message.answer(
        _("Please press <b>{button}</b> below.").format(button=texts.BTN_SHARE_LOCATION),
        reply_markup=keyboards.share_location(),
    )


async def dispute_ask(query: CallbackQuery, callback_data: DisputeCB, account: Account) -> None:
    """ "Not me / report": ask once, on the receipt itself, before anything is frozen."""
    if account.beneficiary_id is None or not isinstance(query.message, Message):
        raise SkipHandler()
    await query.message.edit_text(
        views.dispute_question(query.message.html_text),
        reply_markup=keyboards.dispute_confirm(callback_data.redemption),
    )


async def dispute_keep(query: CallbackQuery, callback_data: DisputeConfirmCB) -> None:
    """ "No, it was me": the receipt as it was, with its report button."""
    if not isinstance(query.message, Message):
        raise SkipHandler()
    await query.message.edit_text(
        views.without_dispute_question(query.message.html_text),
        reply_markup=keyboards.dispute_button(callback_data.redemption),
    )


async def dispute_press(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: DisputeConfirmCB,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    if account.beneficiary_id is None:
        raise SkipHandler()
    result = await disputes.dispute(
        session, callback_data.redemption, account.beneficiary_id, account.telegram_id, ctx.now()
    )
    if result is DisputeResult.NOT_YOURS:
        raise SkipHandler()
    if result is DisputeResult.ALREADY:
        alert(callback_answer, _("You already reported this transaction."))
        return
    if isinstance(query.message, Message):
        await query.message.edit_text(
            views.without_dispute_question(query.message.html_text), reply_markup=None
        )
        await query.message.answer(
            _(
                "Thank you. The transaction is reported to the admins, and shopping codes are "
                "frozen for your family until an admin has checked it."
            )
        )
    await _alert_admins(bot, i18n, session, callback_data.redemption)


async def _alert_admins(bot: Bot, i18n: I18n, session: Session, redemption_id: int) -> None:
    """Tell the admins covering the e-Warong's region, each in their language."""
    found = await disputes.sale_with_ewarong(session, redemption_id)
    if found is None:
        return
    redemption, ewarong = found
    for admin in await accounts.admins_for_region(session, ewarong.village_code):
        locale = accounts.locale_for(admin, admin.language_code)
        with i18n.use_locale(locale):
            text = _("A family reported transaction #{id} ({amount} at {ewarong}).").format(
                id=redemption.id,
                amount=money(redemption.total, locale),
                ewarong=escape(ewarong.name),
            )
            markup = keyboards.admin_dispute(redemption.id)
        try:
            await bot.send_message(admin.telegram_id, text, reply_markup=markup)
        except Exception as error:  # an unreachable admin must not undo the report
            log.warning("dispute alert not delivered: %s", type(error).__name__)


def create_router() -> Router:
    router = Router(name="kpm_shopping")
    router.message.register(shopping_code, Command("kode"))
    router.message.register(shopping_code, F.text == texts.BTN_SHOPPING_CODE)
    router.message.register(shopping_lock, Command("kunci"))
    router.message.register(shopping_lock, F.text == texts.BTN_SHOPPING_LOCK)
    router.callback_query.register(lock_press, LockCB.filter())
    router.message.register(nearby_ask, Command("ewarong"))
    router.message.register(nearby_ask, F.text == texts.BTN_NEARBY)
    # A location outside any flow, or at this flow's step (other flows take their own).
    router.message.register(nearby_answer, StateFilter(None, NearbyFlow.location), F.location)
    router.message.register(nearby_wrong, NearbyFlow.location)
    router.callback_query.register(dispute_ask, DisputeCB.filter())
    router.callback_query.register(dispute_press, DisputeConfirmCB.filter(F.answer == Answer.YES))
    router.callback_query.register(dispute_keep, DisputeConfirmCB.filter(F.answer == Answer.NO))
    add_stale_handler(router, LockCB, DisputeCB, DisputeConfirmCB)
    return router
