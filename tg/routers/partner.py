"""Partner organisations' staff: accept or decline a request, chat through the bot, close."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account
from models.enums import Role
from services.napza import requests as napza
from services.napza.requests import AcceptResult
from tg import keyboards, texts
from tg.callbacks import OutcomeCB, PartnerCB, alert
from tg.context import AppContext
from tg.filters import HasRole
from tg.notify.napza import announce_closed, close_notices, send_deliveries, tell_requester_accepted
from tg.routers.napza import relay, relay_wrong, sla_policy
from tg.states import RelayFlow


async def _acting_partner(session: AsyncSession, account: Account, request_id: int) -> str | None:
    """The partner this staff member acts for on this request (staff may serve several)."""
    current = await napza.current_partner(session, request_id)
    mine = {role.scope for role in account.roles if role.role == Role.PARTNER}
    return current if current in mine else None


async def partner_action(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: PartnerCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    partner_scope: str,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    request_id, action = callback_data.request, callback_data.action
    partner_scope = await _acting_partner(session, account, request_id)
    if partner_scope is None:
        raise SkipHandler()
    if action == "accept":
        await _accept(
            query, callback_answer, session, account, partner_scope, request_id, ctx, bot, i18n
        )
    elif action == "decline":
        delivery = await napza.decline(
            session, request_id, partner_scope, account.telegram_id, sla_policy(ctx), ctx.now()
        )
        if delivery is None:
            raise SkipHandler()
        await send_deliveries(bot, i18n, session, [delivery])
    elif action == "reply":
        request = await napza.request_for_partner(
            session, request_id, partner_scope, account.telegram_id, ctx.now()
        )
        if request is None or request.status != "accepted":
            raise SkipHandler()
        await state.set_state(RelayFlow.partner)
        await state.update_data(request=request_id)
        if isinstance(query.message, Message):
            await query.message.answer(
                _("Type your message for the requester of {ticket}; it goes through the bot. "
                  "/batal ends the chat.").format(ticket=request.ticket),
                reply_markup=keyboards.cancel_only(),
            )  # fmt: skip
    elif action == "close":
        request = await napza.request_for_partner(
            session, request_id, partner_scope, account.telegram_id, ctx.now()
        )
        if request is None or request.status != "accepted":
            raise SkipHandler()
        if isinstance(query.message, Message):
            await query.message.answer(
                _("Outcome of {ticket}?").format(ticket=request.ticket),
                reply_markup=keyboards.rows(
                    [
                        (str(label), OutcomeCB(request=request_id, outcome=key).pack())
                        for key, label in texts.OUTCOME_NAMES.items()
                        if key in napza.CHOSEN_OUTCOMES
                    ]
                ),
            )
    else:
        raise SkipHandler()


async def _accept(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    session: AsyncSession,
    account: Account,
    partner_scope: str,
    request_id: int,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    outcome = await napza.accept(session, request_id, partner_scope, account.telegram_id, ctx.now())
    if outcome.result is AcceptResult.TAKEN:
        alert(callback_answer, _("A colleague has already taken this request."))
        return
    if outcome.result is not AcceptResult.ACCEPTED or outcome.request is None:
        raise SkipHandler()
    request = outcome.request
    name = escape(query.from_user.first_name)
    await close_notices(
        bot, i18n, session, request, lambda: _("Taken by {name}.").format(name=name)
    )
    if isinstance(query.message, Message):
        await query.message.answer(
            _("You took {ticket}. The requester has been told how to reach you.").format(
                ticket=request.ticket
            ),
            reply_markup=keyboards.rows(
                [
                    (_("Reply"), PartnerCB(action="reply", request=request_id).pack()),
                    (_("Close the case"), PartnerCB(action="close", request=request_id).pack()),
                ]
            ),
        )
    await tell_requester_accepted(bot, i18n, session, request)


async def outcome_chosen(
    query: CallbackQuery,
    callback_data: OutcomeCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    partner_scope: str,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    partner_scope = await _acting_partner(session, account, callback_data.request) or ""
    if callback_data.outcome not in napza.CHOSEN_OUTCOMES or not partner_scope:
        raise SkipHandler()
    request = await napza.close(
        session, callback_data.request, partner_scope, account.telegram_id,
        callback_data.outcome, ctx.now(),
    )  # fmt: skip
    if request is None:
        raise SkipHandler()
    await state.clear()
    await announce_closed(query, bot, i18n, session, request)


def create_router() -> Router:
    router = Router(name="partner")
    staff = HasRole(Role.PARTNER)
    router.callback_query.register(partner_action, staff, PartnerCB.filter())
    router.callback_query.register(outcome_chosen, staff, OutcomeCB.filter())
    router.message.register(relay, staff, RelayFlow.partner, F.text, ~F.text.startswith("/"))
    router.message.register(relay_wrong, staff, RelayFlow.partner)
    return router
