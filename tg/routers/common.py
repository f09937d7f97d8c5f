"""For everyone: /start, help, language, cancel."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from models import Account
from models.enums import Role
from services import Session, accounts, invites
from services.accounts import role_scope
from services.invites import InviteResult
from tg import keyboards, texts
from tg.callbacks import LanguageCB, add_stale_handler, alert
from tg.context import AppContext
from tg.filters import LostRole
from tg.menus import set_admin_menu
from tg.views import kpm as views


async def lost_role(
    event: Message | CallbackQuery,
    state: FSMContext,
    account: Account,
    callback_answer: CallbackAnswer | None = None,
) -> None:
    """A step of a staff flow from someone whose role was taken away meanwhile: the flow
    ends here, nothing of it is done."""
    await state.clear()
    text = _("You no longer have access to this. Nothing was done.")
    if isinstance(event, CallbackQuery):
        assert callback_answer is not None
        alert(callback_answer, text)
        if isinstance(event.message, Message):
            await event.message.answer(text, reply_markup=keyboards.main_menu(account))
        return
    await event.answer(text, reply_markup=keyboards.main_menu(account))


async def cancel(message: Message, state: FSMContext, account: Account) -> None:
    """Leave any flow, from any state."""
    had_flow = await state.get_state() is not None
    await state.clear()
    text = _("Cancelled.") if had_flow else _("There is nothing to cancel.")
    await message.answer(text, reply_markup=keyboards.main_menu(account))


async def start(
    message: Message,
    command: CommandObject,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    await state.clear()
    if invites.is_invite_payload(command.args):
        await _accept_invite(message, session, account, command.args or "", ctx)
        return
    if role_scope(account, Role.ADMIN) is not None:
        await set_admin_menu(bot, i18n, account)
    linked = await accounts.linked_beneficiary(session, account)
    await message.answer(
        views.greeting(message.from_user.first_name if message.from_user else "", linked),
        reply_markup=keyboards.main_menu(account),
    )


async def _accept_invite(
    message: Message, session: Session, account: Account, payload: str, ctx: AppContext
) -> None:
    """A deep link `t.me/<bot>?start=inv_...` binds this account to a staff role."""
    outcome = await invites.accept_invite(session, payload, account.telegram_id, ctx.now())
    await session.refresh(account, ["roles"])
    if outcome.result is InviteResult.ACCEPTED and outcome.role == Role.PARTNER:
        text = _(
            "Welcome! This account is now staff of partner organisation {code}. Help requests "
            "for your organisation will arrive here."
        ).format(code=escape(outcome.scope or ""))
    elif outcome.result is InviteResult.ACCEPTED:
        text = _("Welcome! This account is now an agent of e-Warong {code}.").format(
            code=escape(outcome.scope or "")
        )
    elif outcome.result is InviteResult.EXPIRED:
        text = _("This invitation has expired. Ask your admin for a new link.")
    elif outcome.result is InviteResult.USED:
        text = _("This invitation was already used. Ask your admin for a new link.")
    else:
        text = _("This invitation link is not valid.")
    await message.answer(text, reply_markup=keyboards.main_menu(account))


async def show_help(message: Message, account: Account) -> None:
    text = views.help_text(
        is_agent=role_scope(account, Role.AGENT) is not None,
        is_admin=role_scope(account, Role.ADMIN) is not None,
        is_partner=role_scope(account, Role.PARTNER) is not None,
    )
    await message.answer(text, reply_markup=keyboards.main_menu(account))


async def choose_language(message: Message) -> None:
    await message.answer(_("Choose your language:"), reply_markup=keyboards.language_choice())


async def set_language(
    query: CallbackQuery,
    callback_data: LanguageCB,
    session: Session,
    account: Account,
    i18n: I18n,
) -> None:
    if not await accounts.set_locale(session, account, callback_data.code):
        raise SkipHandler()
    with i18n.use_locale(callback_data.code):
        if isinstance(query.message, Message):
            if query.message.reply_markup is not None:  # not yet answered: close the choice
                await query.message.edit_text(
                    _("Language: {name}").format(name=texts.LANGUAGE_NAMES[callback_data.code])
                )
            await query.message.answer(
                _("From now on I will write in English."),
                reply_markup=keyboards.main_menu(account),
            )


async def stop_broadcasts(message: Message, session: Session, account: Account) -> None:
    """/berhenti: no more announcements; receipts and replies still come."""
    await accounts.set_broadcasts(session, account, wanted=False)
    await message.answer(
        _(
            "You will no longer receive announcements. Receipts, replies and anything you ask "
            "for still come. /langganan turns announcements back on."
        )
    )


async def resume_broadcasts(message: Message, session: Session, account: Account) -> None:
    """/langganan: announcements again."""
    await accounts.set_broadcasts(session, account, wanted=True)
    await message.answer(_("You will receive announcements again. /berhenti stops them."))


def create_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="common")
    router.message.register(lost_role, LostRole())
    router.callback_query.register(lost_role, LostRole())
    router.message.register(stop_broadcasts, Command("berhenti", "stop"))
    router.message.register(resume_broadcasts, Command("langganan", "subscribe"))
    router.message.register(cancel, Command("batal", "cancel"))
    router.message.register(cancel, F.text == texts.BTN_CANCEL)
    router.message.register(start, CommandStart())
    router.message.register(show_help, Command("bantuan", "help"))
    router.message.register(show_help, F.text == texts.BTN_HELP)
    router.message.register(choose_language, Command("bahasa", "settings", "language"))
    router.message.register(choose_language, F.text == texts.BTN_LANGUAGE)
    router.callback_query.register(set_language, LanguageCB.filter())
    add_stale_handler(router, LanguageCB)
    return router
