"""Napza help requests, the requester's side: emergency screen, questions, ticket, relay.

No name or NIK is asked. What a partner organisation sees is the help type, age
group, region, urgency and the optional note, never the requester's account.
"""

from __future__ import annotations

from datetime import timedelta
from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import Account
from services.napza import requests as napza
from services.napza.requests import RequestAnswers, SlaPolicy
from services.regions import region_name
from tg import keyboards, texts
from tg.callbacks import NapzaCB, RelayCB, TicketCB
from tg.context import AppContext
from tg.notify.napza import send_deliveries, send_relay, tell_staff_cancelled
from tg.states import NapzaFlow, RelayFlow

MAX_SEARCH = 60
RELAY_MAX = 2000


def sla_policy(ctx: AppContext) -> SlaPolicy:
    return SlaPolicy(
        urgent=timedelta(minutes=ctx.settings.napza_sla_urgent_minutes),
        normal=timedelta(minutes=ctx.settings.napza_sla_normal_minutes),
    )


async def start(message: Message, state: FSMContext) -> None:
    """The emergency numbers come first, before any question."""
    await state.clear()
    await state.set_state(NapzaFlow.emergency)
    await message.answer(
        _(
            "<b>Is someone in danger right now?</b>\n"
            "Call <b>112</b> (emergency) or <b>119</b> (ambulance) at once, or BNN's hotline "
            "<b>184</b>.\n\n"
            "Otherwise I can pass a confidential request for help to a partner organisation "
            "(rehabilitation institution, puskesmas) near you. No name or NIK is needed."
        ),
        reply_markup=keyboards.single(_("Continue"), NapzaCB(step="go").pack()),
    )


async def _ask(query: CallbackQuery, text: str, markup: object = None) -> None:
    if isinstance(query.message, Message):
        await query.message.answer(text, reply_markup=markup)  # type: ignore[arg-type]


async def answer(
    query: CallbackQuery,
    callback_data: NapzaCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    """Every button of the questionnaire; each is valid only at its own step."""
    step, value = callback_data.step, callback_data.value
    current = await state.get_state()
    expected = {
        "go": NapzaFlow.emergency, "whom": NapzaFlow.for_whom, "age": NapzaFlow.age_group,
        "help": NapzaFlow.help_type, "region": NapzaFlow.region, "urgent": NapzaFlow.urgency,
        "note": NapzaFlow.note, "consent": NapzaFlow.consent,
    }.get(step)  # fmt: skip
    if expected is None or current != expected.state or not _valid(step, value):
        raise SkipHandler()
    if step == "go":
        await state.set_state(NapzaFlow.for_whom)
        await _ask(query, _("Who needs help?"), keyboards.choices("whom", texts.FOR_WHOM_NAMES))
    elif step == "whom":
        await state.update_data(for_whom=value)
        await state.set_state(NapzaFlow.age_group)
        await _ask(
            query,
            _("How old is the person who needs help?"),
            keyboards.choices("age", texts.AGE_GROUP_NAMES, columns=2),
        )
    elif step == "age":
        await state.update_data(age_group=value)
        await state.set_state(NapzaFlow.help_type)
        await _ask(
            query, _("What help is needed?"), keyboards.choices("help", texts.HELP_TYPE_NAMES)
        )
    elif step == "help":
        await state.update_data(help_type=value)
        await state.set_state(NapzaFlow.region)
        await _ask(
            query,
            _("Where? Type the name of your regency or city (for example <i>Bandung</i>), "
              "or share your location."),
            keyboards.share_location(),
        )  # fmt: skip
    elif step == "region":
        await _region_chosen(query, state, session, value)
    elif step == "urgent":
        await state.update_data(urgent=value == "true")
        await state.set_state(NapzaFlow.note)
        await _ask(
            query,
            _("Optional: a short note for the organisation (at most 500 characters). "
              "Please do not write names or NIK. Or press Skip."),
            keyboards.single(_("Skip"), NapzaCB(step="note", value="skip").pack()),
        )  # fmt: skip
    elif step == "note":
        await state.update_data(note=None)
        await _ask_consent(query.message, state)  # type: ignore[arg-type]
    elif step == "consent":
        await _consent(query, value, state, session, account, ctx, bot, i18n)


def _valid(step: str, value: str) -> bool:
    allowed = {
        "go": {""}, "whom": set(napza.FOR_WHOM), "age": set(napza.AGE_GROUPS),
        "help": set(napza.HELP_TYPES), "urgent": {"true", "false"}, "note": {"skip"},
        "consent": {"yes", "no"},
    }.get(step)  # fmt: skip
    if step == "region":
        return 2 <= len(value) <= 13
    return allowed is not None and value in allowed


async def _region_chosen(
    query: CallbackQuery, state: FSMContext, session: AsyncSession, code: str
) -> None:
    options = (await state.get_data()).get("region_options", {})
    if code not in options:
        await _ask(query, _("Please pick one of the places shown."))
        return
    await state.update_data(region_code=code, region_name=options[code])
    await _ask_urgency(query.message, state)  # type: ignore[arg-type]


async def _ask_urgency(message: Message, state: FSMContext) -> None:
    await state.set_state(NapzaFlow.urgency)
    await message.answer(
        _("How urgent is it?"), reply_markup=keyboards.choices("urgent", texts.URGENCY_NAMES)
    )


async def region_typed(message: Message, state: FSMContext, session: AsyncSession) -> None:
    text = (message.text or "").strip()
    found = await napza.search_regencies(session, text) if len(text) <= MAX_SEARCH else []
    if not found:
        await message.answer(
            _("I could not find that regency or city. Please type its name again, "
              "for example <i>Kota Bandung</i> or <i>Sleman</i>, or share your location."),
            reply_markup=keyboards.share_location(),
        )  # fmt: skip
        return
    await state.update_data(region_options=dict(found))
    await message.answer(
        _("Which one?"),
        reply_markup=keyboards.choices("region", {code: name for code, name in found}),
    )


async def region_location(message: Message, state: FSMContext, session: AsyncSession) -> None:
    assert message.location is not None
    code = await napza.regency_near(session, message.location.latitude, message.location.longitude)
    if code is None:
        await message.answer(
            _("I could not tell the regency from that location. Please type its name."),
            reply_markup=keyboards.share_location(),
        )
        return
    name = await region_name(session, code) or code
    await state.update_data(region_code=code, region_name=name)
    await message.answer(_("Region: {name}").format(name=escape(name)))
    await _ask_urgency(message, state)


async def region_wrong(message: Message) -> None:
    await message.answer(
        _("Please type the name of your regency or city, or share your location."),
        reply_markup=keyboards.share_location(),
    )


async def note_typed(message: Message, state: FSMContext) -> None:
    note = (message.text or "").strip()
    if len(note) > napza.NOTE_MAX:
        await message.answer(
            _("That note has {count} characters; at most 500 fit. Please shorten it, or press "
              "Skip.").format(count=len(note)),
            reply_markup=keyboards.single(_("Skip"), NapzaCB(step="note", value="skip").pack()),
        )  # fmt: skip
        return
    await state.update_data(note=note or None)
    await _ask_consent(message, state)


async def note_wrong(message: Message) -> None:
    await message.answer(
        _("Please type the note as text, or press Skip."),
        reply_markup=keyboards.single(_("Skip"), NapzaCB(step="note", value="skip").pack()),
    )


async def _ask_consent(message: Message, state: FSMContext) -> None:
    await state.set_state(NapzaFlow.consent)
    await message.answer(
        _("I will share this request (help needed, age group, region, urgency and your note) "
          "with one partner organisation that covers your area. Your name and Telegram "
          "account are not shared; replies come through this bot. Do you agree?"),
        reply_markup=keyboards.choices(
            "consent", {"yes": _("Yes, send it"), "no": _("No, do not send")}, columns=2
        ),
    )  # fmt: skip


async def _consent(
    query: CallbackQuery,
    value: str,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    data = await state.get_data()
    await state.clear()
    message = query.message if isinstance(query.message, Message) else None
    if value != "yes":
        if message:
            await message.answer(
                _("Nothing was sent. You can start again any time with /napza."),
                reply_markup=keyboards.main_menu(account),
            )
        return
    answers = RequestAnswers(
        for_whom=data["for_whom"],
        age_group=data["age_group"],
        help_type=data["help_type"],
        region_code=data["region_code"],
        urgent=bool(data["urgent"]),
        note=data.get("note"),
    )
    delivery = await napza.create_request(
        session, account.telegram_id, answers, sla_policy(ctx), ctx.now()
    )
    await session.commit()  # the request exists before any partner can press Terima
    if message:
        if delivery.partner is None:  # nobody covers the region: the admins were alerted
            text = _(
                "Your request is sent. Your ticket: <b>{ticket}</b>\n"
                "No partner organisation covers your area yet, so an officer has been told. "
                "If it is an emergency, call 112, 119 or BNN's 184."
            )
        else:
            text = _(
                "Your request is sent. Your ticket: <b>{ticket}</b>\n"
                "Check it any time with /tiket. A partner organisation will answer here."
            )
        await message.answer(
            text.format(ticket=delivery.request.ticket), reply_markup=keyboards.main_menu(account)
        )
    await send_deliveries(bot, i18n, session, [delivery])


async def text_in_questions(message: Message) -> None:
    await message.answer(_("Please answer with the buttons above, or /batal to stop."))


async def tickets(
    message: Message,
    session: AsyncSession,
    account: Account,
    command: CommandObject | None = None,  # none for the menu button (no Command filter)
) -> None:
    wanted = (command.args or "").strip().upper() if command else ""
    requests = (
        [r for r in [await napza.request_for_requester(session, wanted, account.telegram_id)] if r]
        if wanted
        else await napza.requests_of(session, account.telegram_id)
    )
    if not requests:
        await message.answer(_("You have no Napza help requests."))
        return
    for request in requests:
        status = texts.REQUEST_STATUS_NAMES.get(request.status, request.status)
        text = _("Ticket <b>{ticket}</b>: {status}").format(ticket=request.ticket, status=status)
        markup = None
        if request.status in ("routing", "accepted", "escalated"):
            buttons = [(_("Cancel this request"), TicketCB(ticket=request.ticket).pack())]
            if request.status == "accepted":
                buttons.insert(
                    0, (_("Chat with the organisation"), RelayCB(request=request.id).pack())
                )
            markup = keyboards.rows(buttons)
        await message.answer(text, reply_markup=markup)


async def cancel_ticket(
    query: CallbackQuery,
    callback_data: TicketCB,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    request = await napza.cancel(session, callback_data.ticket, account.telegram_id, ctx.now())
    if request is None:
        raise SkipHandler()
    if isinstance(query.message, Message):
        await query.message.edit_text(
            _("Ticket <b>{ticket}</b> is cancelled.").format(ticket=request.ticket)
        )
    await tell_staff_cancelled(bot, i18n, session, request)


async def open_relay(
    query: CallbackQuery,
    callback_data: RelayCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
) -> None:
    """The requester chats with the organisation through the bot."""
    request = await napza.requests_of(session, account.telegram_id, limit=50)
    mine = next((r for r in request if r.id == callback_data.request), None)
    if mine is None or mine.status != "accepted":
        raise SkipHandler()
    await state.set_state(RelayFlow.requester)
    await state.update_data(request=mine.id)
    if isinstance(query.message, Message):
        await query.message.answer(
            _("Type your message for the organisation; it is passed on without your Telegram "
              "account. /batal ends the chat."),
            reply_markup=keyboards.cancel_only(),
        )  # fmt: skip


async def relay(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
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
        await message.answer(_("That message is too long; please send at most 2000 characters."))
        return
    sender = "partner" if await state.get_state() == RelayFlow.partner.state else "requester"
    request_id = (await state.get_data())["request"]
    staff_id = message.from_user.id if message.from_user and sender == "partner" else None
    target = await napza.add_relay(session, request_id, sender, text, ctx.now(), staff_id)
    if target is None:
        await state.clear()
        await message.answer(_("This case is closed; the chat has ended."))
        return
    await send_relay(bot, i18n, session, target, request_id, sender, text)
    await message.answer(_("Passed on."))


async def relay_wrong(message: Message) -> None:
    await message.answer(_("Only text can be passed on. /batal ends the chat."))


def create_router() -> Router:
    router = Router(name="napza")
    router.message.register(start, Command("napza"))
    router.message.register(start, F.text == texts.BTN_NAPZA)
    router.callback_query.register(answer, NapzaCB.filter())
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
    return router
