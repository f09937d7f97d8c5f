"""Napza messages the bot sends on its own: offers to partner staff (and editing them
once the offer ended), escalations to admins, news to requesters, relayed messages.
Used by handlers and by the worker. What a partner sees of a request is
`tg.views.napza.offer_text`.

Each recipient reads in their own language. A recipient who blocked the bot is
skipped (logged by error type only); the request's state in the database stands.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from html import escape

from aiogram import Bot
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from models import HelpRequest
from models.enums import RelaySender, RequestStatus
from services import Session, accounts
from services.napza.common import get_request, partner, staff_of
from services.napza.routing import Delivery, notices, record_notice
from services.regions import region_name
from tg import keyboards
from tg.views import napza as views

log = logging.getLogger(__name__)


async def _locale_of(session: Session, telegram_id: int) -> str:
    return await accounts.locale_of(session, telegram_id)


async def _send(
    bot: Bot, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
) -> int | None:
    try:
        sent = await bot.send_message(chat_id, text, reply_markup=markup)
    except Exception as error:  # blocked bot, deleted account: the request stands
        log.warning("napza notice not delivered: %s", type(error).__name__)
        return None
    return sent.message_id


async def offer_text(session: Session, request: HelpRequest, locale: str) -> str:
    """`views.offer_text` with the region's name (call it in the reader's locale)."""
    region = await region_name(session, request.region_code) or request.region_code
    return views.offer_text(request, region, locale)


async def send_deliveries(
    bot: Bot, i18n: I18n, session: Session, deliveries: Sequence[Delivery]
) -> None:
    """Offer each request to its partner's staff, or tell the admins it found no partner."""
    for delivery in deliveries:
        # The delivery was computed in an earlier transaction: act on the request as
        # it is now (it may have been cancelled or moved on in between).
        request = await get_request(session, delivery.request.id) or delivery.request
        await session.refresh(request)
        for telegram_id, message_id in delivery.withdrawn_notices:
            await _withdraw(bot, i18n, session, request, telegram_id, message_id)
        still_offered = (
            delivery.partner is not None
            and request.status == RequestStatus.ROUTING
            and request.partner_code == delivery.partner.code
        )
        for staff in delivery.staff if still_offered else []:
            locale = await _locale_of(session, staff)
            with i18n.context(), i18n.use_locale(locale):
                text = await offer_text(session, request, locale)
                markup = keyboards.napza_offer(request.id)
            message_id = await _send(bot, staff, text, markup)
            if message_id is not None:
                await record_notice(session, request.id, staff, message_id)
        for admin in delivery.admins if request.status == RequestStatus.ESCALATED else []:
            locale = await _locale_of(session, admin)
            with i18n.context(), i18n.use_locale(locale):
                text = _(
                    "<b>No partner organisation answered</b> help request {ticket}. Please "
                    "arrange help in this region, then record the outcome below.\n\n{details}"
                ).format(ticket=request.ticket, details=await offer_text(session, request, locale))
                markup = keyboards.napza_outcomes(request.id, admin=True)
            await _send(bot, admin, text, markup)
        if (
            delivery.requester is not None
            and delivery.partner is None
            and request.status == RequestStatus.ESCALATED
        ):
            locale = await _locale_of(session, delivery.requester)
            with i18n.context(), i18n.use_locale(locale):
                text = _(
                    "Ticket {ticket}: no partner organisation could take it yet, so an officer "
                    "has been told. If it is an emergency, call 112, 119 or BNN's 184."
                ).format(ticket=request.ticket)
            await _send(bot, delivery.requester, text)


async def tell_requester_accepted(
    bot: Bot, i18n: I18n, session: Session, request: HelpRequest
) -> None:
    organisation = await partner(session, request.partner_code or "")
    if organisation is None or request.requester_telegram_id is None:  # None: erased
        return
    locale = await _locale_of(session, request.requester_telegram_id)
    with i18n.context(), i18n.use_locale(locale):
        text = _(
            "Ticket {ticket} was accepted by <b>{name}</b>.\nPhone: {phone}\n"
            "You can also chat with them through this bot; your Telegram account stays hidden."
        ).format(
            ticket=request.ticket, name=escape(organisation.name), phone=escape(organisation.phone)
        )
        markup = keyboards.napza_chat(request.id)
    await _send(bot, request.requester_telegram_id, text, markup)


async def tell_requester_closed(
    bot: Bot, i18n: I18n, session: Session, request: HelpRequest
) -> None:
    if request.requester_telegram_id is None:  # the requester erased their data
        return
    locale = await _locale_of(session, request.requester_telegram_id)
    with i18n.context(), i18n.use_locale(locale):
        text = _(
            "The organisation closed ticket {ticket}. Take care; /napza if you need help again."
        ).format(ticket=request.ticket)
    await _send(bot, request.requester_telegram_id, text)


async def _withdraw(
    bot: Bot,
    i18n: I18n,
    session: Session,
    request: HelpRequest,
    telegram_id: int,
    message_id: int,
) -> None:
    """An offer that was declined or ran out: its buttons go, the details stay hidden."""
    locale = await _locale_of(session, telegram_id)
    with i18n.context(), i18n.use_locale(locale):
        text = _("Help request {ticket} was passed on to another organisation.").format(
            ticket=request.ticket
        )
    try:
        await bot.edit_message_text(text, chat_id=telegram_id, message_id=message_id)
    except Exception as error:  # deleted by the user, or already edited
        log.info("offer not withdrawn: %s", type(error).__name__)


async def close_notices(
    bot: Bot, i18n: I18n, session: Session, request: HelpRequest, text_for: Callable[[], str]
) -> None:
    """Replace the Accept/Decline buttons of the current partner's staff with what happened.

    Staff of partners that declined or let the deadline pass keep the short "passed on"
    text: they must not see the request again (so nothing is edited for a request no
    partner holds).
    """
    if request.partner_code is None:
        return
    for telegram_id, message_id in await notices(session, request.id, request.partner_code):
        locale = await _locale_of(session, telegram_id)
        with i18n.context(), i18n.use_locale(locale):
            text = await offer_text(session, request, locale) + "\n\n" + text_for()
        try:
            await bot.edit_message_text(text, chat_id=telegram_id, message_id=message_id)
        except Exception as error:  # already edited, or deleted by the user
            log.info("notice not edited: %s", type(error).__name__)


async def tell_staff_cancelled(
    bot: Bot, i18n: I18n, session: Session, request: HelpRequest
) -> None:
    """The requester cancelled the request (with /tiket, or by deleting their data).

    The current partner's Accept/Decline messages say so; the staff member who had
    accepted it also gets a message (their chat has ended); for an escalated request the
    region's admins are told that nothing more is needed. Nobody learns who asked.
    """
    if request.partner_code is not None:
        await close_notices(
            bot, i18n, session, request, lambda: _("The requester cancelled this request.")
        )
        if request.accepted_by is not None and request.accepted_by in await staff_of(
            session, request.partner_code
        ):
            locale = await _locale_of(session, request.accepted_by)
            with i18n.context(), i18n.use_locale(locale):
                text = _(
                    "Help request {ticket} was withdrawn by the requester. The chat has ended; "
                    "nothing more is needed."
                ).format(ticket=request.ticket)
            await _send(bot, request.accepted_by, text)
        return
    for admin in await accounts.admins_for_region(session, request.region_code):
        locale = await _locale_of(session, admin.telegram_id)
        with i18n.context(), i18n.use_locale(locale):
            text = _(
                "Help request {ticket} was withdrawn by the requester; no help needs to be "
                "arranged any more."
            ).format(ticket=request.ticket)
        await _send(bot, admin.telegram_id, text)


async def send_relay(
    bot: Bot,
    i18n: I18n,
    session: Session,
    target: int,
    request_id: int,
    sender: RelaySender,
    text: str,
) -> None:
    """Pass a message on as the bot's own, naming only the side it comes from."""
    request = await get_request(session, request_id)
    locale = await _locale_of(session, target)
    with i18n.context(), i18n.use_locale(locale):
        if sender == RelaySender.PARTNER:
            header = _("Message from the organisation (ticket {ticket}):")
            markup = keyboards.napza_reply(request_id, to=RelaySender.REQUESTER)
        else:
            header = _("Message from the requester (ticket {ticket}):")
            markup = keyboards.napza_reply(request_id, to=RelaySender.PARTNER)
        body = header.format(ticket=request.ticket if request else "") + "\n" + escape(text)
    await _send(bot, target, body, markup)
