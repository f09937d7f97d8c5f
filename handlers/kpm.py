"""KPM self-service: link the account, aid status, delete my data."""

from __future__ import annotations

import secrets
from html import escape

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts, views
from bot.context import AppContext
from bot.keyboards import EraseCB
from bot.services import accounts, status
from bot.services.identity import (
    clean_digits,
    mask_name,
    nik_problem,
    normalize_phone,
    parse_birth_date,
)
from bot.services.linking import LinkClaim, LinkResult, link_account
from bot.services.regions import timezone_for
from handlers.states import EraseFlow, LinkFlow
from models import Account

MAX_INPUT = 64  # longer text in a form step is certainly not a NIK or a date


async def link_start(
    message: Message, state: FSMContext, account: Account, ctx: AppContext
) -> None:
    if account.beneficiary_id is not None:
        await message.answer(
            _("This account is already linked. Press <b>{status}</b> to see your aid.").format(
                status=texts.BTN_STATUS
            ),
            reply_markup=keyboards.main_menu(account),
        )
        return
    if locked := await ctx.link_lockout.locked_for(account.telegram_id):
        await message.answer(views.locked(locked), reply_markup=keyboards.main_menu(account))
        return
    await state.set_state(LinkFlow.phone)
    await message.answer(
        _(
            "Step 1 of 3: press <b>{button}</b> below to share the phone number of this "
            "Telegram account. Typing a number is not accepted."
        ).format(button=texts.BTN_SHARE_PHONE),
        reply_markup=keyboards.share_phone(),
    )


async def link_phone(message: Message, state: FSMContext, ctx: AppContext) -> None:
    contact = message.contact
    assert contact is not None and message.from_user is not None
    if contact.user_id != message.from_user.id:
        await message.answer(
            _("That is not your own contact. Please share the number of this Telegram account."),
            reply_markup=keyboards.share_phone(),
        )
        return
    phone = normalize_phone(contact.phone_number)
    if phone is None:
        await message.answer(
            _("I could not read that phone number. Please try the button again."),
            reply_markup=keyboards.share_phone(),
        )
        return
    await state.update_data(phone_hash=ctx.hasher.phone(phone))
    await state.set_state(LinkFlow.nik)
    await message.answer(
        _("Step 2 of 3: type your <b>NIK</b>, the 16-digit number on your KTP."),
        reply_markup=keyboards.cancel_only(_("16-digit NIK")),
    )


async def link_phone_wrong(message: Message) -> None:
    await message.answer(
        _("Please press <b>{button}</b> below to share your phone number.").format(
            button=texts.BTN_SHARE_PHONE
        ),
        reply_markup=keyboards.share_phone(),
    )


async def link_nik(message: Message, state: FSMContext, ctx: AppContext) -> None:
    text = message.text or ""
    nik = clean_digits(text) if len(text) <= MAX_INPUT else ""
    problem = nik_problem(nik, ctx.province_codes)
    if problem is not None:
        if len(nik) != 16 or not nik.isdigit():
            reply = _("A NIK has exactly 16 digits. Please type it as it is on your KTP.")
        else:
            reply = _(
                "That is not a valid NIK. Please check it against your KTP and type it again."
            )
        await message.answer(reply, reply_markup=keyboards.cancel_only(_("16-digit NIK")))
        return
    await state.update_data(nik_hash=ctx.hasher.nik(nik))
    await state.set_state(LinkFlow.birth_date)
    await message.answer(
        _("Step 3 of 3: type your <b>birth date</b>, for example 15-07-1985 or 15 Juli 1985."),
        reply_markup=keyboards.cancel_only(_("DD-MM-YYYY")),
    )


async def link_nik_wrong(message: Message) -> None:
    await message.answer(
        _("Please type your 16-digit NIK as text."),
        reply_markup=keyboards.cancel_only(_("16-digit NIK")),
    )


async def link_birth_date(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
) -> None:
    text = message.text or ""
    now = ctx.now()
    birth_date = parse_birth_date(text, now.date()) if len(text) <= MAX_INPUT else None
    if birth_date is None:
        await message.answer(
            _("I could not read that date. Please type it like 15-07-1985 or 15 Juli 1985."),
            reply_markup=keyboards.cancel_only(_("DD-MM-YYYY")),
        )
        return
    data = await state.get_data()
    claim = LinkClaim(
        phone_hash=data["phone_hash"], nik_hash=data["nik_hash"], birth_date=birth_date
    )
    outcome = await link_account(session, account, claim, ctx.link_lockout, now)
    if outcome.result is LinkResult.NO_MATCH:
        await state.set_state(LinkFlow.nik)
        await message.answer(
            _(
                "The data you entered does not match our records. Please check your NIK and "
                "birth date and try again ({left} attempts left).\n\n"
                "Type your NIK again:"
            ).format(left=outcome.attempts_left),
            reply_markup=keyboards.cancel_only(_("16-digit NIK")),
        )
        return
    await state.clear()
    if outcome.result is LinkResult.LINKED:
        assert outcome.beneficiary is not None
        reply = _(
            "Your account is now linked to the KPM data of <b>{name}</b>. "
            "Press <b>{status}</b> to see your aid."
        ).format(name=escape(mask_name(outcome.beneficiary.name)), status=texts.BTN_STATUS)
    elif outcome.result is LinkResult.LOCKED:
        reply = views.locked(outcome.locked_seconds)
    elif outcome.result is LinkResult.LINKED_ELSEWHERE:
        reply = _(
            "This KPM data is already linked to another Telegram account, so it cannot be "
            "linked here. If that is not you, please contact your PKH facilitator "
            "(pendamping) or the village office."
        )
    else:
        reply = _("This account is already linked.")
    await message.answer(reply, reply_markup=keyboards.main_menu(account))


async def link_birth_date_wrong(message: Message) -> None:
    await message.answer(
        _("Please type your birth date as text, like 15-07-1985."),
        reply_markup=keyboards.cancel_only(_("DD-MM-YYYY")),
    )


async def show_status(
    message: Message, session: AsyncSession, account: Account, locale: str, ctx: AppContext
) -> None:
    beneficiary = await accounts.linked_beneficiary(session, account)
    if beneficiary is None:
        await message.answer(
            _("Your account is not linked yet. Press <b>{link}</b> first.").format(
                link=texts.BTN_LINK
            ),
            reply_markup=keyboards.main_menu(account),
        )
        return
    today = ctx.now().astimezone(timezone_for(beneficiary.village_code)).date()
    result = await status.aid_status(session, beneficiary, today)
    await message.answer(
        views.aid_status(result, locale), reply_markup=keyboards.main_menu(account)
    )


async def erase_ask(message: Message, state: FSMContext) -> None:
    token = secrets.token_urlsafe(8)
    await state.set_state(EraseFlow.confirm)
    await state.update_data(erase_token=token)
    await message.answer(
        _(
            "Delete my data: this unlinks this Telegram account from your KPM data and deletes "
            "your language choice and everything else the bot keeps about you. Your aid and the "
            "ministry's registry are not affected. You can link again later.\n\nDelete now?"
        ),
        reply_markup=keyboards.erase_confirm(token),
    )


async def erase_answer(
    query: CallbackQuery,
    callback_data: EraseCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
) -> None:
    data = await state.get_data()
    valid = await state.get_state() == EraseFlow.confirm.state and secrets.compare_digest(
        str(data.get("erase_token", "")), callback_data.token
    )
    if not valid:
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    await state.clear()
    await query.answer()
    message = query.message if isinstance(query.message, Message) else None
    if callback_data.action != "yes":
        if message:
            await message.edit_text(_("Nothing was deleted."))
        return
    await accounts.erase(session, account)
    if message:
        await message.edit_text(_("Your data has been deleted and this account is unlinked."))
        await message.answer(
            _("Goodbye. Press /start whenever you want to use the service again."),
            reply_markup=ReplyKeyboardRemove(),
        )


def create_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="kpm")
    router.message.register(link_start, Command("hubungkan", "link"))
    router.message.register(link_start, F.text == texts.BTN_LINK)
    router.message.register(link_phone, LinkFlow.phone, F.contact)
    router.message.register(link_phone_wrong, LinkFlow.phone)
    router.message.register(link_nik, LinkFlow.nik, F.text)
    router.message.register(link_nik_wrong, LinkFlow.nik)
    router.message.register(link_birth_date, LinkFlow.birth_date, F.text)
    router.message.register(link_birth_date_wrong, LinkFlow.birth_date)
    router.message.register(show_status, Command("status"))
    router.message.register(show_status, F.text == texts.BTN_STATUS)
    router.message.register(erase_ask, Command("hapus", "delete"))
    router.message.register(erase_ask, F.text == texts.BTN_ERASE)
    router.callback_query.register(erase_answer, EraseCB.filter())
    return router
