"""Admins compose a broadcast in chat: audience, region (inside their scope), language,
the message itself (text with formatting, a photo or a document, delivered with
copyMessage), optional per-language versions, a preview with the recipient count, then
now or a time in their regional zone. Pause, resume and cancel come as buttons on the
progress message, which the worker keeps up to date."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _

from models import Account
from models.enums import Role
from services import Session
from services.accounts import SUPPORTED_LOCALES
from services.broadcasts import store as broadcasts
from services.broadcasts.store import Action, Audience
from services.regions import in_scope, region_name, timezone_for, zone_abbreviation
from tg import keyboards, texts
from tg.callbacks import BroadcastAction, BroadcastCB, ComposeCB, ComposeStep, add_stale_handler
from tg.context import AppContext
from tg.filters import HasRole
from tg.formatting import local_datetime
from tg.states import BroadcastFlow
from tg.views.broadcasts import progress_text

REGION_CODE_RE = re.compile(r"^\d{2}(\.\d{2}(\.\d{2}(\.\d{4})?)?)?$")
WHEN_RE = re.compile(r"^(?:(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})\s+)?(\d{1,2})[:.](\d{2})$")
MAX_SCHEDULE_AHEAD = timedelta(days=60)


def _language_names() -> dict[str, str]:
    return {"all": _("Every language"), **texts.LANGUAGE_NAMES}


async def start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(BroadcastFlow.audience)
    await message.answer(
        _("New broadcast. Press Cancel at any time to stop."),
        reply_markup=keyboards.cancel_only(),
    )
    await message.answer(
        _("Who should receive it?"),
        reply_markup=keyboards.compose_choices(ComposeStep.AUDIENCE, texts.AUDIENCE_NAMES),
    )


async def _scope_label(session: Session, scope: str) -> str:
    """What "all of my area" reaches: the whole country, or all of one region."""
    if not scope:
        return _("the whole country")
    return _("all of {region}").format(region=escape(await region_name(session, scope) or scope))


async def choose_audience(
    query: CallbackQuery,
    callback_data: ComposeCB,
    state: FSMContext,
    session: Session,
    admin_scope: str,
) -> None:
    if callback_data.value not in broadcasts.AUDIENCES:
        raise SkipHandler()
    await state.update_data(audience=callback_data.value)
    await state.set_state(BroadcastFlow.region)
    assert isinstance(query.message, Message)
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(
        _(
            "Which region? Type a region code inside your area (for example {example}), "
            "or press the button to reach {scope}."
        ).format(example=admin_scope + ".01" if admin_scope else "32.04",
                 scope=await _scope_label(session, admin_scope)),
        reply_markup=keyboards.compose_choices(ComposeStep.REGION, {"all": _("All of my area")}),
    )  # fmt: skip


async def _ask_language(message: Message, state: FSMContext, prefix: str) -> None:
    await state.update_data(prefix=prefix)
    await state.set_state(BroadcastFlow.language)
    await message.answer(
        _("In which language should people read it?"),
        reply_markup=keyboards.compose_choices(ComposeStep.LANGUAGE, _language_names()),
    )


async def region_all(
    query: CallbackQuery, callback_data: ComposeCB, state: FSMContext, admin_scope: str
) -> None:
    if callback_data.value != "all":
        raise SkipHandler()
    assert isinstance(query.message, Message)
    await query.message.edit_reply_markup(reply_markup=None)
    await _ask_language(query.message, state, admin_scope)


async def region_typed(
    message: Message, state: FSMContext, session: Session, admin_scope: str
) -> None:
    code = (message.text or "").strip()
    if not REGION_CODE_RE.match(code):
        await message.answer(
            _("That is not a region code. Region codes look like 32, 32.04 or 32.04.01.")
        )
        return
    if not in_scope(admin_scope, code) or await region_name(session, code) is None:
        await message.answer(_("That region is not in your area. Type a code inside it."))
        return
    await _ask_language(message, state, code)


async def choose_language(
    query: CallbackQuery, callback_data: ComposeCB, state: FSMContext
) -> None:
    if callback_data.value not in ("all", *SUPPORTED_LOCALES):
        raise SkipHandler()
    await state.update_data(language=None if callback_data.value == "all" else callback_data.value)
    await state.set_state(BroadcastFlow.message)
    assert isinstance(query.message, Message)
    await query.message.edit_reply_markup(reply_markup=None)
    await query.message.answer(
        _(
            "Now send the message exactly as people should see it: text (bold, italic and "
            "links are kept), a photo or a document with a caption."
        )
    )


def _is_content(message: Message) -> bool:
    return bool(message.text or message.photo or message.document)


async def _ask_versions(message: Message, state: FSMContext) -> None:
    data = await state.get_data()
    missing = {
        language: _("Add a version in {language}").format(language=texts.LANGUAGE_NAMES[language])
        for language in SUPPORTED_LOCALES
        if language not in data.get("versions", {})
    }
    await state.set_state(BroadcastFlow.versions)
    await message.answer(
        _(
            "Got it. You may add a separate version for people who read another language; "
            "everyone else gets this one."
        ),
        reply_markup=keyboards.compose_choices(
            ComposeStep.VERSION, {**missing, "done": _("Continue")}
        ),
    )


async def message_received(
    message: Message,
    state: FSMContext,
    bot: Bot,
    session: Session,
    admin_scope: str,
    locale: str,
) -> None:
    if not _is_content(message):
        await message.answer(_("Please send text, a photo or a document."))
        return
    await state.update_data(chat_id=message.chat.id, message_id=message.message_id, versions={})
    data = await state.get_data()
    if data.get("language") is None:
        await _ask_versions(message, state)
        return
    await _preview(message, state, bot, session, locale)


async def choose_version(
    query: CallbackQuery,
    callback_data: ComposeCB,
    state: FSMContext,
    bot: Bot,
    session: Session,
    locale: str,
) -> None:
    data = await state.get_data()
    value = callback_data.value
    if value != "done" and (value not in SUPPORTED_LOCALES or value in data.get("versions", {})):
        raise SkipHandler()
    assert isinstance(query.message, Message)
    await query.message.edit_reply_markup(reply_markup=None)
    if value == "done":
        await _preview(query.message, state, bot, session, locale)
        return
    await state.update_data(version_language=value)
    await state.set_state(BroadcastFlow.version)
    await query.message.answer(
        _("Send the version for people who read {language}.").format(
            language=texts.LANGUAGE_NAMES[value]
        )
    )


async def version_received(message: Message, state: FSMContext) -> None:
    if not _is_content(message):
        await message.answer(_("Please send text, a photo or a document."))
        return
    data = await state.get_data()
    versions = {**data.get("versions", {}), data["version_language"]: message.message_id}
    await state.update_data(versions=versions)
    await _ask_versions(message, state)


def _audience(data: dict[str, object]) -> Audience:
    return Audience(data["audience"], data["prefix"], data.get("language"))


async def _preview(
    message: Message, state: FSMContext, bot: Bot, session: Session, locale: str
) -> None:
    data = await state.get_data()
    audience = _audience(data)
    count = await broadcasts.count_recipients(session, audience)
    await state.set_state(BroadcastFlow.confirm)
    await message.answer(_("Preview — this is exactly what people will receive:"))
    await bot.copy_message(message.chat.id, data["chat_id"], data["message_id"])
    for language, version in sorted(data.get("versions", {}).items()):
        await message.answer(
            _("For people who read {language}:").format(language=texts.LANGUAGE_NAMES[language])
        )
        await bot.copy_message(message.chat.id, data["chat_id"], version)
    region = (
        escape(await region_name(session, audience.region_prefix) or audience.region_prefix)
        if audience.region_prefix
        else _("the whole country")
    )
    language = texts.LANGUAGE_NAMES[audience.language] if audience.language else _("every language")
    await message.answer(
        _(
            "Broadcast to <b>{audience}</b> in {region} ({language}).\n"
            "Recipients now: <b>{count}</b> (people who left announcements or blocked the bot "
            "are not counted)."
        ).format(
            audience=texts.AUDIENCE_NAMES[audience.group],
            region=region,
            language=language,
            count=count,
        ),
        reply_markup=keyboards.compose_choices(
            ComposeStep.CONFIRM,
            {"now": _("Send now"), "later": _("Schedule"), "cancel": _("Cancel")},
        ),
    )


async def _store(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    locale: str,
    admin_scope: str,
    when: datetime,
) -> None:
    data = await state.get_data()
    audience = _audience(data)
    if not in_scope(admin_scope, audience.region_prefix):  # the scope changed meanwhile
        await state.clear()
        await message.answer(_("That region is not in your area. Type a code inside it."))
        return
    broadcast = await broadcasts.create(
        session, admin=account.telegram_id, audience=audience, source_chat_id=data["chat_id"],
        message_id=data["message_id"], versions=data.get("versions", {}), scheduled_at=when,
        now=ctx.now(),
    )  # fmt: skip
    await state.clear()
    progress = await broadcasts.progress(session, broadcast.id)
    assert progress is not None
    sent = await message.answer(
        progress_text(broadcast, progress, locale, admin_scope or None, ctx.now()),
        reply_markup=keyboards.broadcast_controls(broadcast.id, broadcast.status),
    )
    await broadcasts.set_progress_message(session, broadcast.id, sent.chat.id, sent.message_id)
    await message.answer(
        _("Broadcast #{id} saved. This message above shows its progress.").format(id=broadcast.id),
        reply_markup=keyboards.main_menu(account),
    )


async def confirm(
    query: CallbackQuery,
    callback_data: ComposeCB,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    locale: str,
    admin_scope: str,
) -> None:
    if callback_data.value not in ("now", "later", "cancel"):
        raise SkipHandler()
    assert isinstance(query.message, Message)
    await query.message.edit_reply_markup(reply_markup=None)
    if callback_data.value == "cancel":
        await state.clear()
        await query.message.answer(_("Cancelled."), reply_markup=keyboards.main_menu(account))
        return
    if callback_data.value == "later":
        await state.set_state(BroadcastFlow.schedule)
        zone = zone_abbreviation(admin_scope or None)
        await query.message.answer(
            _(
                "When should it go out? Type the date and time in {zone}, for example "
                "{example}, or only a time such as 08:00."
            ).format(zone=zone, example="28-11-2026 08:00")
        )
        return
    await _store(query.message, state, session, account, ctx, locale, admin_scope, ctx.now())


def parse_when(text: str, now: datetime, region: str | None) -> datetime | None:
    """`DD-MM-YYYY HH:MM` or `HH:MM` (the next such moment) in the region's zone."""
    match = WHEN_RE.match(text.strip())
    if not match:
        return None
    day, month, year, hour, minute = match.groups()
    zone = timezone_for(region)
    local_now = now.astimezone(zone)
    try:
        if year is None:
            moment = local_now.replace(hour=int(hour), minute=int(minute), second=0, microsecond=0)
            if moment <= local_now:
                moment += timedelta(days=1)
        else:
            moment = datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=zone)
    except ValueError:
        return None
    return moment


async def schedule_typed(
    message: Message,
    state: FSMContext,
    session: Session,
    account: Account,
    ctx: AppContext,
    locale: str,
    admin_scope: str,
) -> None:
    now = ctx.now()
    when = parse_when((message.text or "")[:40], now, admin_scope or None)
    if when is None:
        await message.answer(
            _("Please type the date and time like {example}, or a time like 08:00.").format(
                example="28-11-2026 08:00"
            )
        )
        return
    if when <= now or when - now > MAX_SCHEDULE_AHEAD:
        await message.answer(_("Choose a moment in the future, at most 60 days ahead."))
        return
    await _store(message, state, session, account, ctx, locale, admin_scope, when)
    await message.answer(
        _("It will go out on {when}.").format(
            when=local_datetime(when, locale, admin_scope or None)
        )
    )


async def not_content(message: Message) -> None:
    await message.answer(_("Please send text, a photo or a document."))


async def control(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: BroadcastCB,
    session: Session,
    account: Account,
    ctx: AppContext,
    locale: str,
    admin_scope: str,
) -> None:
    """Pause, resume or cancel from the progress message (re-checked: state and scope)."""
    action = CONTROL_ACTIONS[callback_data.action]
    broadcast = await broadcasts.change(
        session, callback_data.id, action, admin=account.telegram_id, scope=admin_scope,
        now=ctx.now(),
    )  # fmt: skip
    if broadcast is None:
        raise SkipHandler()
    progress = await broadcasts.progress(session, broadcast.id)
    assert progress is not None
    callback_answer.text = {
        Action.PAUSE: _("Paused."),
        Action.RESUME: _("Resumed."),
        Action.CANCEL: _("Broadcast cancelled."),
    }[action]
    if isinstance(query.message, Message):
        await query.message.edit_text(
            progress_text(broadcast, progress, locale, admin_scope or None, ctx.now()),
            reply_markup=keyboards.broadcast_controls(broadcast.id, broadcast.status),
        )


CONTROL_ACTIONS = {
    BroadcastAction.PAUSE: Action.PAUSE,
    BroadcastAction.RESUME: Action.RESUME,
    BroadcastAction.CANCEL: Action.CANCEL,
}


def create_router() -> Router:
    router = Router(name="broadcast")
    admin = HasRole(Role.ADMIN)
    router.message.register(start, admin, F.text == texts.BTN_BROADCAST)
    router.message.register(start, admin, Command("siaran"))

    def step(name: ComposeStep) -> CallbackQueryFilter:
        return ComposeCB.filter(F.step == name)

    router.callback_query.register(
        choose_audience, admin, BroadcastFlow.audience, step(ComposeStep.AUDIENCE)
    )
    router.callback_query.register(
        region_all, admin, BroadcastFlow.region, step(ComposeStep.REGION)
    )
    router.message.register(region_typed, admin, BroadcastFlow.region, F.text)
    router.callback_query.register(
        choose_language, admin, BroadcastFlow.language, step(ComposeStep.LANGUAGE)
    )
    router.message.register(message_received, admin, BroadcastFlow.message)
    router.callback_query.register(
        choose_version, admin, BroadcastFlow.versions, step(ComposeStep.VERSION)
    )
    router.message.register(version_received, admin, BroadcastFlow.version)
    router.callback_query.register(confirm, admin, BroadcastFlow.confirm, step(ComposeStep.CONFIRM))
    router.message.register(schedule_typed, admin, BroadcastFlow.schedule, F.text)
    router.callback_query.register(control, admin, BroadcastCB.filter())
    add_stale_handler(router, ComposeCB, BroadcastCB)
    return router
