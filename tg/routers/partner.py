"""Partner organisations' staff: accept or decline a request, chat through the bot, close.

One handler per button (`PartnerCB.action`); each acts only for the partner the request
is offered to or owned by, and only when that staff member belongs to it.
"""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n

from models import Account, HelpRequest
from models.enums import CHOSEN_OUTCOMES, RequestStatus, Role
from services import Session
from services.napza import actions
from services.napza.actions import AcceptResult
from services.napza.common import current_partner
from services.napza.routing import SlaPolicy
from tg import keyboards
from tg.callbacks import OutcomeCB, PartnerAction, PartnerCB, add_stale_handler, alert
from tg.context import AppContext
from tg.filters import HasRole
from tg.notify.napza import (
    close_notices,
    send_deliveries,
    tell_requester_accepted,
    tell_requester_closed,
)
from tg.routers.napza import relay, relay_wrong
from tg.states import RelayFlow
from tg.views import napza as views


async def _acting_partner(session: Session, account: Account, request_id: int) -> str:
    """The partner this staff member acts for on this request (staff may serve several);
    a stale button when the request is not offered to or owned by one of theirs."""
    current = await current_partner(session, request_id)
    mine = {role.scope for role in account.roles if role.role == Role.PARTNER}
    if current is None or current not in mine:
        raise SkipHandler()
    return current


async def _accepted_case(
    session: Session, account: Account, request_id: int, ctx: AppContext
) -> HelpRequest:
    """The accepted request this staff member's partner owns (viewing it is audited)."""
    partner_code = await _acting_partner(session, account, request_id)
    request = await actions.request_for_partner(
        session, request_id, partner_code, account.telegram_id, ctx.now()
    )
    if request is None or request.status != RequestStatus.ACCEPTED:
        raise SkipHandler()
    return request


async def accept_offer(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: PartnerCB,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    request_id = callback_data.request
    partner_code = await _acting_partner(session, account, request_id)
    outcome = await actions.accept(
        session, request_id, partner_code, account.telegram_id, ctx.now()
    )
    if outcome.result is AcceptResult.TAKEN:
        alert(callback_answer, views.colleague_took_it())
        return
    if outcome.result is not AcceptResult.ACCEPTED or outcome.request is None:
        raise SkipHandler()
    request = outcome.request
    name = query.from_user.first_name
    await close_notices(bot, i18n, session, request, lambda: views.taken_by(name))
    if isinstance(query.message, Message):
        await query.message.answer(
            views.you_took(request.ticket), reply_markup=keyboards.napza_case(request_id)
        )
    await tell_requester_accepted(bot, i18n, session, request)


async def decline_offer(
    query: CallbackQuery,
    callback_data: PartnerCB,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    request_id = callback_data.request
    partner_code = await _acting_partner(session, account, request_id)
    delivery = await actions.decline(
        session,
        request_id,
        partner_code,
        account.telegram_id,
        SlaPolicy.from_settings(ctx.settings),
        ctx.now(),
    )
    if delivery is None:
        raise SkipHandler()
    await send_deliveries(bot, i18n, session, [delivery])


async def open_chat(
    query: CallbackQuery,
    callback_data: PartnerCB,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
) -> None:
    request = await _accepted_case(session, account, callback_data.request, ctx)
    await state.set_state(RelayFlow.partner)
    await state.update_data(request=request.id)
    if isinstance(query.message, Message):
        await query.message.answer(
            views.partner_chat_opened(request.ticket), reply_markup=keyboards.cancel_only()
        )


async def ask_outcome(
    query: CallbackQuery,
    callback_data: PartnerCB,
    session: Session,
    account: Account,
    ctx: AppContext,
) -> None:
    request = await _accepted_case(session, account, callback_data.request, ctx)
    if isinstance(query.message, Message):
        await query.message.answer(
            views.ask_outcome(request.ticket), reply_markup=keyboards.napza_outcomes(request.id)
        )


async def outcome_chosen(
    query: CallbackQuery,
    callback_data: OutcomeCB,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    partner_code = await _acting_partner(session, account, callback_data.request)
    request = await actions.close(
        session, callback_data.request, partner_code, account.telegram_id,
        callback_data.outcome, ctx.now(),
    )  # fmt: skip
    if request is None:
        raise SkipHandler()
    await state.clear()
    await announce_closed(query, bot, i18n, session, request)


async def announce_closed(
    query: CallbackQuery, bot: Bot, i18n: I18n, session: Session, request: HelpRequest
) -> None:
    """After a partner (or an admin, `tg.routers.admin`) closed a case: say so in place of
    the outcome buttons, and tell the requester."""
    if isinstance(query.message, Message) and request.outcome:
        await query.message.edit_text(views.case_closed(request))
    await tell_requester_closed(bot, i18n, session, request)


def create_router() -> Router:
    router = Router(name="partner")
    staff = HasRole(Role.PARTNER)
    router.callback_query.register(
        accept_offer, staff, PartnerCB.filter(F.action == PartnerAction.ACCEPT)
    )
    router.callback_query.register(
        decline_offer, staff, PartnerCB.filter(F.action == PartnerAction.DECLINE)
    )
    router.callback_query.register(
        open_chat, staff, PartnerCB.filter(F.action == PartnerAction.REPLY)
    )
    router.callback_query.register(
        ask_outcome, staff, PartnerCB.filter(F.action == PartnerAction.CLOSE)
    )
    router.callback_query.register(
        outcome_chosen, staff, OutcomeCB.filter(F.outcome.in_(CHOSEN_OUTCOMES))
    )
    router.message.register(relay, staff, RelayFlow.partner, F.text, ~F.text.startswith("/"))
    router.message.register(relay_wrong, staff, RelayFlow.partner)
    add_stale_handler(router, PartnerCB, OutcomeCB)
    return router
