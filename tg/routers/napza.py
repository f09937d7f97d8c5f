"""Napza help requests, the requester's side: emergency screen, questions, ticket, relay.

No name or NIK is asked. What a partner organisation sees is the help type, age
group, region, urgency and the optional note, never the requester's account.

Each question's buttons have their own handler, taken only in that question's state
and only with one of its values; any other press is a stale button.
"""

from __future__ import annotations

from collections.abc import Container

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReactionTypeEmoji,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import I18n

from infra.db import storable
from models import Account
from models.enums import AgeGroup, ForWhom, HelpType, RelaySender, RequestStatus
from services import Session
from services.napza.actions import CANCELLABLE, cancel, request_for_requester, requests_of
from services.napza.intake import NOTE_MAX, RequestAnswers, create_request
from services.napza.regions import regency_near, search_regencies
from services.napza.relay import RELAY_MAX, add_relay, requester_chat
from services.napza.routing import SlaPolicy
from services.regions import region_name
from tg import keyboards, texts
from tg.callbacks import NOTE_SKIP, Answer, NapzaCB, NapzaStep, RelayCB, TicketCB, add_stale_handler
from tg.context import AppContext
from tg.notify.napza import send_deliveries, send_relay, tell_staff_cancelled
from tg.states import NapzaFlow, RelayFlow
from tg.views import napza as views

# The values each question's buttons carry (`keyboards.choices` sends str(key).lower()).
FOR_WHOM = frozenset(member.value for member in ForWhom)
AGE_GROUPS = frozenset(member.value for member in AgeGroup)
HELP_TYPES = frozenset(member.value for member in HelpType)
URGENCY_VALUES = frozenset(str(key).lower() for key in texts.URGENCY_NAMES)  # "true", "false"
CONSENT_VALUES = frozenset(member.value for member in Answer)
REGION_CODE_LENGTH = range(2, 14)  # what a region button can carry; the FSM holds the offer


async def start(message: Message, state: FSMContext) -> None:
    """The emergency numbers come first, before any question."""
    await state.clear()
    await state.set_state(NapzaFlow.emergency)
    await message.answer(views.emergency(), reply_markup=keyboards.napza_continue())


async def _ask(
    query: CallbackQuery,
    text: str,
    markup: InlineKeyboardMarkup | ReplyKeyboardMarkup | None = None,
) -> None:
    if isinstance(query.message, Message):
        await query.message.answer(text, reply_markup=markup)


async def go(query: CallbackQuery, state: FSMContext) -> None:
    await state.set_state(NapzaFlow.for_whom)
    await _ask(query, views.ask_for_whom(), keyboards.choices(NapzaStep.WHOM, texts.FOR_WHOM_NAMES))


async def whom_chosen(query: CallbackQuery, callback_data: NapzaCB, state: FSMContext) -> None:
    await state.update_data(for_whom=callback_data.value)
    await state.set_state(NapzaFlow.age_group)
    await _ask(
        query,
        views.ask_age_group(),
        keyboards.choices(NapzaStep.AGE, texts.AGE_GROUP_NAMES, columns=2),
    )


async def age_chosen(query: CallbackQuery, callback_data: NapzaCB, state: FSMContext) -> None:
    await state.update_data(age_group=callback_data.value)
    await state.set_state(NapzaFlow.help_type)
    await _ask(
        query, views.ask_help_type(), keyboards.choices(NapzaStep.HELP, texts.HELP_TYPE_NAMES)
    )


async def help_chosen(query: CallbackQuery, callback_data: NapzaCB, state: FSMContext) -> None:
    await state.update_data(help_type=callback_data.value)
    await state.set_state(NapzaFlow.region)
    await _ask(query, views.ask_region(), keyboards.share_location())


async def region_chosen(query: CallbackQuery, callback_data: NapzaCB, state: FSMContext) -> None:
    code = callback_data.value
    options = (await state.get_data()).get("region_options", {})
    if code not in options:
        await _ask(query, views.pick_a_shown_place())
        return
    await state.update_data(region_code=code, region_name=options[code])
    await _ask_urgency(query.message, state)


async def _ask_urgency(message: Message, state: FSMContext) -> None:
    await state.set_state(NapzaFlow.urgency)
    await message.answer(
        views.ask_urgency(),
        reply_markup=keyboards.choices(NapzaStep.URGENT, texts.URGENCY_NAMES),
    )


async def region_typed(message: Message, state: FSMContext, session: Session) -> None:
    found = await search_regencies(session, (message.text or "").strip())
    if not found:
        await message.answer(views.region_not_found(), reply_markup=keyboards.share_location())
        return
    await state.update_data(region_options=dict(found))
    await message.answer(
        views.which_region(found),
        reply_markup=keyboards.choices(NapzaStep.REGION, {code: name for code, name in found}),
    )


async def region_location(message: Message, state: FSMContext, session: Session) -> None:
    assert message.location is not None
    code = await regency_near(session, message.location.latitude, message.location.longitude)
    if code is None:
        await message.answer(views.location_not_placed(), reply_markup=keyboards.share_location())
        return
    name = await region_name(session, code) or code
    await state.update_data(region_code=code, region_name=name)
    await message.answer(views.region(name))
    await _ask_urgency(message, state)


async def region_wrong(message: Message) -> None:
    await message.answer(views.region_wrong(), reply_markup=keyboards.share_location())


async def urgency_chosen(query: CallbackQuery, callback_data: NapzaCB, state: FSMContext) -> None:
    await state.update_data(urgent=callback_data.value == "true")
    await state.set_state(NapzaFlow.note)
    await _ask(query, views.ask_note(), keyboards.napza_skip_note())


async def note_skipped(query: CallbackQuery, state: FSMContext) -> None:
    await state.update_data(note=None)
    await _ask_consent(query.message, state)


async def note_typed(message: Message, state: FSMContext) -> None:
    note = (message.text or "").strip()
    if len(note) > NOTE_MAX:
        await message.answer(
            views.note_too_long(len(note)), reply_markup=keyboards.napza_skip_note()
        )
        return
    await state.update_data(note=note or None)
    await _ask_consent(message, state)


async def note_wrong(message: Message) -> None:
    await message.answer(views.note_wrong(), reply_markup=keyboards.napza_skip_note())


async def _ask_consent(message: Message, state: FSMContext) -> None:
    await state.set_state(NapzaFlow.consent)
    await message.answer(views.ask_consent(), reply_markup=keyboards.napza_consent())


async def consent_chosen(
    query: CallbackQuery,
    callback_data: NapzaCB,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await state.get_data()
    await state.clear()
    message = query.message if isinstance(query.message, Message) else None
    if callback_data.value != Answer.YES:
        if message:
            await message.answer(views.nothing_sent(), reply_markup=keyboards.main_menu(account))
        return
    answers = RequestAnswers(
        for_whom=data["for_whom"],
        age_group=data["age_group"],
        help_type=data["help_type"],
        region_code=data["region_code"],
        urgent=bool(data["urgent"]),
        note=data.get("note"),
    )
    # Committed by the service: the request exists before any partner can press Terima.
    delivery = await create_request(
        session, account.telegram_id, answers, SlaPolicy.from_settings(ctx.settings), ctx.now()
    )
    if message:
        await message.answer(
            views.sent(delivery.request.ticket, escalated=delivery.partner is None),
            reply_markup=keyboards.main_menu(account),
        )
    await send_deliveries(bot, i18n, session, [delivery])


async def text_in_questions(message: Message) -> None:
    await message.answer(views.use_the_buttons())


async def tickets(
    message: Message,
    session: Session,
    account: Account,
    command: CommandObject | None = None,  # none for the menu button (no Command filter)
) -> None:
    wanted = (command.args or "").strip().upper() if command else ""
    if wanted:
        found = await request_for_requester(session, wanted, account.telegram_id)
        requests = [found] if found else []
    else:
        requests = await requests_of(session, account.telegram_id)
    if not requests:
        await message.answer(views.no_requests())
        return
    for request in requests:
        markup = (
            keyboards.napza_ticket(
                request.id, request.ticket, chat=request.status == RequestStatus.ACCEPTED
            )
            if request.status in CANCELLABLE
            else None
        )
        await message.answer(views.ticket_status(request), reply_markup=markup)


async def cancel_ticket(
    query: CallbackQuery,
    callback_data: TicketCB,
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    request = await cancel(session, callback_data.ticket, account.telegram_id, ctx.now())
    if request is None:
        raise SkipHandler()
    if isinstance(query.message, Message):
        await query.message.edit_text(views.ticket_cancelled(request.ticket))
    await tell_staff_cancelled(bot, i18n, session, request)


async def open_relay(
    query: CallbackQuery,
    callback_data: RelayCB,
    state: FSMContext,
    session: Session,
    account: Account,
) -> None:
    """The requester chats with the organisation through the bot."""
    request = await requester_chat(session, callback_data.request, account.telegram_id)
    if request is None:
        raise SkipHandler()
    await state.set_state(RelayFlow.requester)
    await state.update_data(request=request.id)
    if isinstance(query.message, Message):
        await query.message.answer(
            views.requester_chat_opened(), reply_markup=keyboards.cancel_only()
        )


async def relay(
    message: Message,
    state: FSMContext,
    session: Session,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    """Pass a text on to the other side of an accepted request (requester or partner)."""
    text = storable(message.text or "")
    if not text.strip():  # nothing left once what cannot be stored is taken out
        await relay_wrong(message)
        return
    if len(text) > RELAY_MAX:
        await message.answer(views.relay_too_long())
        return
    sender = (
        RelaySender.PARTNER
        if await state.get_state() == RelayFlow.partner.state
        else RelaySender.REQUESTER
    )
    request_id = (await state.get_data())["request"]
    staff_id = message.from_user.id if message.from_user and sender is RelaySender.PARTNER else None
    target = await add_relay(session, request_id, sender, text, ctx.now(), staff_id)
    if target is None:
        await state.clear()
        await message.answer(views.chat_ended())
        return
    await send_relay(bot, i18n, session, target, request_id, sender, text)
    if (await state.get_data()).get("told_passed_on"):  # said once; then a 👍 on the message
        await message.react([ReactionTypeEmoji(emoji="👍")])
        return
    await state.update_data(told_passed_on=True)
    await message.answer(views.passed_on())


async def relay_wrong(message: Message) -> None:
    await message.answer(views.relay_text_only())


def _step(step: NapzaStep, values: Container[str]) -> CallbackQueryFilter:
    """The buttons of one question: that step, and one of the values it offers."""
    return NapzaCB.filter((F.step == step) & F.value.in_(values))


def create_router() -> Router:
    router = Router(name="napza")
    router.message.register(start, Command("napza"))
    router.message.register(start, F.text == texts.BTN_NAPZA)
    router.callback_query.register(go, NapzaFlow.emergency, _step(NapzaStep.GO, ("",)))
    router.callback_query.register(whom_chosen, NapzaFlow.for_whom, _step(NapzaStep.WHOM, FOR_WHOM))
    router.callback_query.register(
        age_chosen, NapzaFlow.age_group, _step(NapzaStep.AGE, AGE_GROUPS)
    )
    router.callback_query.register(
        help_chosen, NapzaFlow.help_type, _step(NapzaStep.HELP, HELP_TYPES)
    )
    router.callback_query.register(
        region_chosen,
        NapzaFlow.region,
        NapzaCB.filter((F.step == NapzaStep.REGION) & F.value.len().in_(REGION_CODE_LENGTH)),
    )
    router.callback_query.register(
        urgency_chosen, NapzaFlow.urgency, _step(NapzaStep.URGENT, URGENCY_VALUES)
    )
    router.callback_query.register(
        note_skipped, NapzaFlow.note, _step(NapzaStep.NOTE, (NOTE_SKIP,))
    )
    router.callback_query.register(
        consent_chosen, NapzaFlow.consent, _step(NapzaStep.CONSENT, CONSENT_VALUES)
    )
    router.message.register(region_location, NapzaFlow.region, F.location)
    router.message.register(region_typed, NapzaFlow.region, F.text)
    router.message.register(region_wrong, NapzaFlow.region)
    router.message.register(note_typed, NapzaFlow.note, F.text)
    router.message.register(note_wrong, NapzaFlow.note)
    router.message.register(text_in_questions, NapzaFlow.emergency)
    router.message.register(text_in_questions, NapzaFlow.for_whom)
    router.message.register(text_in_questions, NapzaFlow.age_group)
    router.message.register(text_in_questions, NapzaFlow.help_type)
    router.message.register(text_in_questions, NapzaFlow.urgency)
    router.message.register(text_in_questions, NapzaFlow.consent)
    router.message.register(tickets, Command("tiket", "ticket"))
    router.message.register(tickets, F.text == texts.BTN_MY_TICKETS)
    router.callback_query.register(cancel_ticket, TicketCB.filter())
    router.callback_query.register(open_relay, RelayCB.filter())
    router.message.register(relay, RelayFlow.requester, F.text, ~F.text.startswith("/"))
    router.message.register(relay_wrong, RelayFlow.requester)
    add_stale_handler(router, NapzaCB, TicketCB, RelayCB)
    return router
