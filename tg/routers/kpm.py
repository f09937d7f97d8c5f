"""KPM self-service: link the account, aid status, delete my data."""

from __future__ import annotations

import secrets
from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from models import Account
from services import Session, accounts
from services.identity import (
    DateProblem,
    clean_digits,
    mask_name,
    nik_problem,
    normalize_phone,
    read_birth_date,
)
from services.regions import timezone_for
from services.registry import activation, linking, status
from services.registry.linking import LinkClaim, LinkOutcome, LinkResult, link_account
from tg import keyboards, texts
from tg.callbacks import Answer, EraseCB, add_stale_handler
from tg.context import AppContext
from tg.notify.napza import tell_staff_cancelled
from tg.states import EraseFlow, LinkFlow
from tg.views import kpm as views

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
    if locked := await linking.locked_for(ctx.link_guard, account.telegram_id):
        await message.answer(views.locked(locked), reply_markup=keyboards.main_menu(account))
        return
    await state.set_state(LinkFlow.phone)
    await message.answer(
        _(
            "Step 1 of 3: press <b>{button}</b> below to share the phone number of this "
            "Telegram account. Typing a number is not accepted.\n\n"
            "No phone number in your KPM data, or a new number? Ask your PKH facilitator "
            "(pendamping) or the village office for an activation code, then press "
            "<b>{code}</b>."
        ).format(button=texts.BTN_SHARE_PHONE, code=texts.BTN_ACTIVATION_CODE),
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


async def _read_nik(message: Message, ctx: AppContext) -> str | None:
    """The NIK typed in this message, or None after saying what is wrong with it."""
    text = message.text or ""
    nik = clean_digits(text) if len(text) <= MAX_INPUT else ""
    problem = nik_problem(nik, ctx.province_codes)
    if problem is None:
        return nik
    if len(nik) != 16 or not nik.isdigit():
        reply = _("A NIK has exactly 16 digits. Please type it as it is on your KTP.")
    else:
        reply = _("That is not a valid NIK. Please check it against your KTP and type it again.")
    await message.answer(reply, reply_markup=keyboards.cancel_only(_("16-digit NIK")))
    return None


async def link_nik(message: Message, state: FSMContext, ctx: AppContext) -> None:
    if (nik := await _read_nik(message, ctx)) is None:
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
    session: Session,
    account: Account,
    ctx: AppContext,
) -> None:
    text = message.text or ""
    now = ctx.now()
    birth_date = (
        read_birth_date(text, now.date()) if len(text) <= MAX_INPUT else DateProblem.UNREADABLE
    )
    if isinstance(birth_date, DateProblem):
        await message.answer(
            views.birth_date_refused(birth_date),
            reply_markup=keyboards.cancel_only(_("DD-MM-YYYY")),
        )
        return
    data = await state.get_data()
    claim = LinkClaim(
        nik_hash=data["nik_hash"], phone_hash=data["phone_hash"], birth_date=birth_date
    )
    outcome = await link_account(session, account, claim, ctx.link_guard, ctx.hasher, now)
    mismatch = _(
        "The data you entered does not match our records. Please check your NIK and "
        "birth date and try again ({left} attempts left). If your phone number is not "
        "in your KPM data, ask your pendamping or the village office for an activation "
        "code.\n\nType your NIK again:"
    )
    await _link_outcome(message, state, account, outcome, LinkFlow.nik, mismatch)


async def link_birth_date_wrong(message: Message) -> None:
    await message.answer(
        _("Please type your birth date as text, like 15-07-1985."),
        reply_markup=keyboards.cancel_only(_("DD-MM-YYYY")),
    )


async def activation_start(message: Message, state: FSMContext) -> None:
    await state.set_state(LinkFlow.activation_nik)
    await message.answer(
        _("Step 1 of 2: type your <b>NIK</b>, the 16-digit number on your KTP."),
        reply_markup=keyboards.cancel_only(_("16-digit NIK")),
    )


async def activation_nik(message: Message, state: FSMContext, ctx: AppContext) -> None:
    if (nik := await _read_nik(message, ctx)) is None:
        return
    await state.update_data(nik_hash=ctx.hasher.nik(nik))
    await state.set_state(LinkFlow.activation_code)
    await message.answer(
        _(
            "Step 2 of 2: type the <b>activation code</b> you received from your pendamping "
            "or the village office, for example K7M2P-9QX4R."
        ),
        reply_markup=keyboards.cancel_only(_("Activation code")),
    )


async def activation_code(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
) -> None:
    text = message.text or ""
    code = activation.normalize(text) if len(text) <= MAX_INPUT else None
    if code is None:
        await message.answer(
            _(
                "An activation code has 10 letters and digits, like K7M2P-9QX4R. "
                "Please type it as it is written on your paper."
            ),
            reply_markup=keyboards.cancel_only(_("Activation code")),
        )
        return
    data = await state.get_data()
    claim = LinkClaim(nik_hash=data["nik_hash"], activation_code=code)
    outcome = await link_account(session, account, claim, ctx.link_guard, ctx.hasher, ctx.now())
    mismatch = _(
        "The NIK and activation code do not match our records, or the code has "
        "expired or was used already ({left} attempts left). Ask your pendamping or "
        "the village office for a new code if needed.\n\nType your NIK again:"
    )
    await _link_outcome(message, state, account, outcome, LinkFlow.activation_nik, mismatch)


async def activation_code_wrong(message: Message) -> None:
    await message.answer(
        _("Please type the activation code as text, like K7M2P-9QX4R."),
        reply_markup=keyboards.cancel_only(_("Activation code")),
    )


async def _link_outcome(
    message: Message,
    state: FSMContext,
    account: Account,
    outcome: LinkOutcome,
    retry: State,
    mismatch: str,
) -> None:
    """After a link attempt: back to the NIK step (`retry`) with `mismatch` ({left}), or
    the end of the flow: linked, locked out, or (a second tab) already linked."""
    if outcome.result is LinkResult.NO_MATCH:
        await state.set_state(retry)
        await message.answer(
            mismatch.format(left=outcome.attempts_left),
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
    else:
        reply = _("This account is already linked.")
    await message.answer(reply, reply_markup=keyboards.main_menu(account))


async def show_status(
    message: Message, session: Session, account: Account, locale: str, ctx: AppContext
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
            "<b>Delete my data</b>\n"
            "Deleted:\n"
            "• the link to your KPM data, and your language choice\n"
            "• the notes and chats of your Napza requests; open ones are cancelled\n"
            "Kept:\n"
            "• the ministry's registry, your aid and the transaction history\n"
            "• a record that your data was deleted\n"
            "You can link again later. Delete now?"
        ),
        reply_markup=keyboards.erase_confirm(token),
    )


async def _erase_confirmation(state: FSMContext, callback_data: EraseCB) -> None:
    """Go on only for the confirmation this account was shown last (token in the FSM)."""
    data = await state.get_data()
    # Compared as bytes: compare_digest refuses non-ASCII str (a forged token like "é").
    valid = await state.get_state() == EraseFlow.confirm.state and secrets.compare_digest(
        str(data.get("erase_token", "")).encode("utf-8", "surrogatepass"),
        callback_data.token.encode("utf-8", "surrogatepass"),
    )
    if not valid:
        raise SkipHandler()
    await state.clear()


async def erase_keep(query: CallbackQuery, callback_data: EraseCB, state: FSMContext) -> None:
    await _erase_confirmation(state, callback_data)
    if isinstance(query.message, Message):
        await query.message.edit_text(_("Nothing was deleted."))


async def erase_confirmed(
    query: CallbackQuery,
    callback_data: EraseCB,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    await _erase_confirmation(state, callback_data)
    withdrawn = await accounts.erase(session, account, ctx.now())  # committed
    if isinstance(query.message, Message):
        await query.message.edit_text(_("Your data has been deleted and this account is unlinked."))
        await query.message.answer(
            _("Goodbye. Press /start whenever you want to use the service again."),
            reply_markup=ReplyKeyboardRemove(),
        )
    for request in withdrawn:  # the partner staff or admins involved; no identity
        await tell_staff_cancelled(bot, i18n, session, request)


def create_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="kpm")
    router.message.register(link_start, Command("hubungkan", "link"))
    router.message.register(link_start, F.text == texts.BTN_LINK)
    router.message.register(link_phone, LinkFlow.phone, F.contact)
    router.message.register(activation_start, Command("aktivasi", "activate"))
    router.message.register(activation_start, LinkFlow.phone, F.text == texts.BTN_ACTIVATION_CODE)
    router.message.register(link_phone_wrong, LinkFlow.phone)
    router.message.register(link_nik, LinkFlow.nik, F.text)
    router.message.register(link_nik_wrong, LinkFlow.nik)
    router.message.register(link_birth_date, LinkFlow.birth_date, F.text)
    router.message.register(link_birth_date_wrong, LinkFlow.birth_date)
    router.message.register(activation_nik, LinkFlow.activation_nik, F.text)
    router.message.register(link_nik_wrong, LinkFlow.activation_nik)
    router.message.register(activation_code, LinkFlow.activation_code, F.text)
    router.message.register(activation_code_wrong, LinkFlow.activation_code)
    router.message.register(show_status, Command("status"))
    router.message.register(show_status, F.text == texts.BTN_STATUS)
    router.message.register(erase_ask, Command("hapus", "delete"))
    router.message.register(erase_ask, F.text == texts.BTN_ERASE)
    router.callback_query.register(erase_confirmed, EraseCB.filter(F.action == Answer.YES))
    router.callback_query.register(erase_keep, EraseCB.filter(F.action == Answer.NO))
    add_stale_handler(router, EraseCB)
    return router
