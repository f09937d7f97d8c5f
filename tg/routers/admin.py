"""Admins: transaction disputes (reverse or dismiss), inviting and removing e-Warong agents."""

from __future__ import annotations

from functools import partial
from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal
from sqlalchemy.ext.asyncio import AsyncSession

from models import Account, Redemption
from models.enums import Role
from services import audit, invites, revocation, stats
from services.bpnt import shopping
from services.bpnt.ewarongs import get_ewarong
from services.bpnt.shopping import ReversalResult
from services.napza import requests as napza
from services.regions import in_scope, region_name
from services.revocation import Revoked
from tg import keyboards, texts
from tg.callbacks import AdminDisputeCB, AdminOutcomeCB, alert
from tg.context import AppContext
from tg.filters import HasRole
from tg.formatting import local_datetime, money
from tg.menus import ADMIN_COMMANDS
from tg.notify.napza import announce_closed
from tg.states import ReversalFlow


async def _ewarong_in_scope(session: AsyncSession, code: str, scope: str) -> bool:
    ewarong = await get_ewarong(session, code)
    return ewarong is not None and in_scope(scope, ewarong.village_code)


async def _redemption_in_scope(session: AsyncSession, redemption_id: int, scope: str) -> bool:
    redemption = await session.get(Redemption, redemption_id)
    return redemption is not None and await _ewarong_in_scope(
        session, redemption.ewarong_code, scope
    )


async def disputes(message: Message, session: AsyncSession, admin_scope: str, locale: str) -> None:
    shown = 0
    for redemption in await shopping.open_disputes(session, limit=200):
        ewarong = await get_ewarong(session, redemption.ewarong_code)
        if ewarong is None or not in_scope(admin_scope, ewarong.village_code):
            continue
        shown += 1
        await message.answer(
            _("Dispute on transaction #{id}: {amount} at {ewarong}, {when}.").format(
                id=redemption.id,
                amount=money(redemption.total, locale),
                ewarong=escape(ewarong.name),
                when=local_datetime(redemption.created_at, locale, ewarong.village_code),
            ),
            reply_markup=keyboards.admin_dispute(redemption.id),
        )
        if shown == 20:
            break
    if not shown:
        await message.answer(_("There are no open transaction disputes."))


async def dispute_action(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: AdminDisputeCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    if not await _redemption_in_scope(session, callback_data.redemption, admin_scope):
        raise SkipHandler()
    if callback_data.action == "dismiss":
        done = await shopping.dismiss_dispute(
            session, callback_data.redemption, admin=account.telegram_id, now=ctx.now()
        )
        text = (
            _("Transaction #{id} found genuine; the family can shop again.").format(
                id=callback_data.redemption
            )
            if done
            else _("This dispute is already closed.")
        )
        # A fast second press finds the message already saying so: nothing to edit.
        if isinstance(query.message, Message) and query.message.text != text:
            await query.message.edit_text(text)
        return
    if not await shopping.is_open_dispute(session, callback_data.redemption):
        alert(callback_answer, _("Only a disputed transaction can be reversed."))
        return
    await state.set_state(ReversalFlow.reason)
    await state.update_data(redemption=callback_data.redemption)
    if isinstance(query.message, Message):
        await query.message.answer(
            _(
                "Type the reason for reversing transaction #{id} (it is kept in the audit log)."
            ).format(id=callback_data.redemption),
            reply_markup=keyboards.cancel_only(),
        )


async def reversal_reason(
    message: Message,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    data = await state.get_data()
    if not await _redemption_in_scope(session, data["redemption"], admin_scope):
        await state.clear()
        await message.answer(_("This button is no longer valid."))
        return
    result = await shopping.reverse(
        session, data["redemption"], admin=account.telegram_id, reason=message.text or "",
        now=ctx.now(),
    )  # fmt: skip
    if result is ReversalResult.NO_REASON:
        await message.answer(_("Please type a reason."))
        return
    await state.clear()
    text = {
        ReversalResult.REVERSED: _("Transaction #{id} reversed; the money is back in the wallet."),
        ReversalResult.ALREADY: _("Transaction #{id} was already reversed."),
        ReversalResult.NOT_FOUND: _("Transaction #{id} does not exist."),
        ReversalResult.NOT_DISPUTED: _(
            "Transaction #{id} is not under an open dispute, so it cannot be reversed."
        ),
    }[result].format(id=data["redemption"])
    await message.answer(text, reply_markup=keyboards.main_menu(account))


async def invite_staff(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    bot: Bot,
    ctx: AppContext,
) -> None:
    """/undang_agen E-WARONG-CODE or /undang_mitra ORG-CODE: a one-time deep link."""
    role = Role.AGENT if command.command == "undang_agen" else Role.PARTNER
    code = (command.args or "").strip()
    if not code or len(code) > 32:
        await message.answer(
            _("Usage: /undang_agen E-WARONG-CODE")
            if role == Role.AGENT
            else _("Usage: /undang_mitra ORGANISATION-CODE")
        )
        return
    try:
        if role == Role.AGENT and not await _ewarong_in_scope(session, code, admin_scope):
            raise ValueError(code)  # unknown, or outside this admin's region
        if role == Role.PARTNER and admin_scope:
            raise ValueError(code)  # partners cover regions: national admins invite them
        payload = await invites.create_invite(
            session, role, code, created_by=account.telegram_id, now=ctx.now()
        )
    except ValueError:
        await message.answer(
            _("No active e-Warong has that code.")
            if role == Role.AGENT
            else _("No active partner organisation has that code.")
        )
        return
    me = await bot.me()
    await message.answer(
        _(
            "One-time link for a new agent of {code} (valid 48 hours, one use):\n{link}\n"
            "Send it only to the agent."
        ).format(code=escape(code), link=invites.deep_link(me.username or "bot", payload))
        if role == Role.AGENT
        else _(
            "One-time link for a new staff member of {code} (valid 48 hours, one use):\n"
            "{link}\nSend it only to that person."
        ).format(code=escape(code), link=invites.deep_link(me.username or "bot", payload))
    )


def _revoked_text(result: Revoked, done: str) -> str:
    return {
        Revoked.DONE: done,
        Revoked.UNCHANGED: _("Nothing changed: it already was so."),
        Revoked.NOT_FOUND: _("Not found. Please check the Telegram id and the code."),
        Revoked.OUT_OF_SCOPE: _("That is outside what you may manage."),
    }[result]


def _telegram_id(text: str) -> int | None:
    return int(text) if text.isdecimal() and 0 < int(text) < 2**63 else None


async def remove_member(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    """/hapus_agen TELEGRAM_ID E-WARONG-CODE or /hapus_mitra TELEGRAM_ID ORGANISATION-CODE"""
    agent = command.command == "hapus_agen"
    parts = (command.args or "").split()
    target = _telegram_id(parts[0]) if len(parts) == 2 else None
    if target is None:
        await message.answer(
            _("Usage: /hapus_agen TELEGRAM_ID E-WARONG-CODE")
            if agent
            else _("Usage: /hapus_mitra TELEGRAM_ID ORGANISATION-CODE")
        )
        return
    remove = revocation.remove_agent if agent else revocation.remove_staff
    result = await remove(
        session, target, parts[1], ctx.now(), actor=account.telegram_id, actor_scope=admin_scope
    )
    if agent and result is Revoked.NOT_FOUND:
        await message.answer(_("No such agent at that e-Warong."))
        return
    done = _("Agent removed.") if agent else _("Staff member removed from the organisation.")
    await message.answer(_revoked_text(result, done))


async def remove_admin(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    """/hapus_admin TELEGRAM_ID [REGION-CODE]; without a code, the admin's only role."""
    parts = (command.args or "").split()
    target = _telegram_id(parts[0]) if len(parts) in (1, 2) else None
    if target is None:
        await message.answer(_("Usage: /hapus_admin TELEGRAM_ID [REGION-CODE]"))
        return
    scopes = await revocation.admin_scopes(session, target)
    if len(parts) == 2:
        scope: str | None = parts[1]
    elif len(scopes) == 1:
        scope = scopes[0]
    else:
        await message.answer(
            _("That account has several admin roles: add the region code.")
            if scopes
            else _revoked_text(Revoked.NOT_FOUND, "")
        )
        return
    result = await revocation.remove_admin(
        session, target, scope, ctx.now(), actor=account.telegram_id, actor_scope=admin_scope
    )
    await message.answer(_revoked_text(result, _("Admin removed.")))


async def deactivate(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    """/nonaktif_ewarong E-WARONG-CODE or /nonaktif_mitra ORGANISATION-CODE"""
    code = (command.args or "").strip()
    ewarong = command.command == "nonaktif_ewarong"
    if not code or len(code) > 32 or " " in code:
        await message.answer(
            _("Usage: /nonaktif_ewarong E-WARONG-CODE")
            if ewarong
            else _("Usage: /nonaktif_mitra ORGANISATION-CODE")
        )
        return
    switch = revocation.set_ewarong_active if ewarong else revocation.set_partner_active
    result = await switch(
        session, code, False, ctx.now(), actor=account.telegram_id, actor_scope=admin_scope
    )
    done = (
        _("e-Warong {code} is deactivated: no transaction goes through there any more.")
        if ewarong
        else _("Partner organisation {code} is deactivated: it gets no new requests.")
    ).format(code=escape(code))
    await message.answer(_revoked_text(result, done))


async def napza_outcome(
    query: CallbackQuery,
    callback_data: AdminOutcomeCB,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    """An escalated Napza request: the admin records what was arranged, which closes it."""
    if callback_data.outcome not in napza.CHOSEN_OUTCOMES or not 0 < callback_data.request < 2**63:
        raise SkipHandler()
    request = await napza.close_escalated(
        session, callback_data.request, account.telegram_id, callback_data.outcome, ctx.now()
    )
    if request is None:
        raise SkipHandler()
    await announce_closed(query, bot, i18n, session, request)


async def statistics(
    message: Message, session: AsyncSession, account: Account, admin_scope: str, locale: str,
    ctx: AppContext,
) -> None:  # fmt: skip
    """Linked KPM by programme and region, today's redemptions, referrals, broadcasts."""
    now = ctx.now()
    figures = await stats.overview(session, admin_scope, now)
    number = partial(format_decimal, format="#,##0", locale=locale)
    area = escape(await region_name(session, admin_scope) or admin_scope) if admin_scope else None
    lines = [
        _("<b>Statistics for {area}</b>").format(area=area or _("the whole country")),
        _("Linked KPM families: {linked} (PKH {pkh}, BPNT {bpnt})").format(
            linked=number(figures.linked), pkh=number(figures.pkh), bpnt=number(figures.bpnt)
        ),
    ]
    for line in figures.regions:
        name = escape(await region_name(session, line.code) or line.code)
        lines.append(
            f"• {name}: {number(line.linked)} (PKH {number(line.pkh)}, BPNT {number(line.bpnt)})"
        )
    lines.append(
        _("BPNT redemptions today: {count}, {amount}").format(
            count=number(figures.redemptions_today),
            amount=money(figures.redeemed_today, locale),
        )
    )
    lines.append(
        _("Open Napza referrals: {open} (overdue: {overdue})").format(
            open=number(figures.open_referrals), overdue=number(figures.overdue_referrals)
        )
    )
    if figures.broadcasts:
        lines.append(_("Broadcasts in progress:"))
        for broadcast in figures.broadcasts:
            lines.append(
                f"• #{broadcast.id} {texts.AUDIENCE_NAMES[broadcast.audience]}: "
                f"{texts.BROADCAST_STATUS_NAMES[broadcast.status]}"
            )
    else:
        lines.append(_("No broadcasts in progress."))
    await audit.record(session, "admin.statistics", actor=account.telegram_id, subject_type="scope",
                       subject_id=admin_scope or "national")  # fmt: skip
    await message.answer("\n".join(lines))


async def pending_referrals(
    message: Message, session: AsyncSession, account: Account, admin_scope: str,
    locale: str, ctx: AppContext,
) -> None:  # fmt: skip
    """Open Napza referrals in the admin's region, escalated first; no requester identity."""
    now = ctx.now()
    requests = await stats.pending_referrals(session, admin_scope, now)
    await audit.record(
        session, "napza.pending_listed", actor=account.telegram_id, subject_type="scope",
        subject_id=admin_scope or "national", count=len(requests),
    )  # fmt: skip
    if not requests:
        await message.answer(_("There are no pending Napza referrals in your area."))
        return
    for request in requests:
        region = escape(await region_name(session, request.region_code) or request.region_code)
        text = _(
            "<b>{ticket}</b> — {status}\nHelp: {help}, {urgency}\nRegion: {region}\n"
            "Waiting since {since}"
        ).format(
            ticket=request.ticket, status=texts.REQUEST_STATUS_NAMES[request.status],
            help=texts.HELP_TYPE_NAMES[request.help_type],
            urgency=texts.URGENCY_NAMES[request.urgent], region=region,
            since=local_datetime(request.created_at, locale, request.region_code),
        )  # fmt: skip
        if request.status == "routing" and request.sla_due_at and request.sla_due_at < now:
            text += "\n" + _("The partner has not answered in time.")
        markup = (
            keyboards.rows(
                [
                    (str(label), AdminOutcomeCB(request=request.id, outcome=key).pack())
                    for key, label in texts.OUTCOME_NAMES.items()
                    if key in napza.CHOSEN_OUTCOMES
                ]
            )
            if request.status == "escalated"
            else None
        )
        await message.answer(text, reply_markup=markup)


async def invite_help(message: Message, admin_scope: str) -> None:
    lines = [_("To invite an e-Warong agent, send /undang_agen followed by the e-Warong code.")]
    if not admin_scope:
        lines.append(
            _("To invite partner staff, send /undang_mitra followed by the organisation code.")
        )
    lines.append(_("Each link works once, for 48 hours. Send it only to that person."))
    await message.answer("\n".join(lines))


async def not_an_admin(message: Message) -> None:
    await message.answer(_("This command is only for admins."))


def create_router() -> Router:
    router = Router(name="admin")
    admin = HasRole(Role.ADMIN)
    router.message.register(disputes, admin, F.text == texts.BTN_DISPUTES)
    router.message.register(disputes, admin, Command("sengketa"))
    router.callback_query.register(dispute_action, admin, AdminDisputeCB.filter())
    router.message.register(reversal_reason, admin, ReversalFlow.reason, F.text)
    router.callback_query.register(napza_outcome, admin, AdminOutcomeCB.filter())
    router.message.register(invite_staff, admin, Command("undang_agen", "undang_mitra"))
    router.message.register(remove_member, admin, Command("hapus_agen", "hapus_mitra"))
    router.message.register(remove_admin, admin, Command("hapus_admin"))
    router.message.register(deactivate, admin, Command("nonaktif_ewarong", "nonaktif_mitra"))
    router.message.register(statistics, admin, F.text == texts.BTN_STATS)
    router.message.register(statistics, admin, Command("statistik"))
    router.message.register(pending_referrals, admin, F.text == texts.BTN_PENDING_REFERRALS)
    router.message.register(pending_referrals, admin, Command("rujukan"))
    router.message.register(invite_help, admin, F.text == texts.BTN_INVITE)
    router.message.register(
        not_an_admin,
        Command(*ADMIN_COMMANDS),
    )  # fmt: skip
    for label in (
        texts.BTN_DISPUTES, texts.BTN_BROADCAST, texts.BTN_STATS, texts.BTN_INVITE,
        texts.BTN_PENDING_REFERRALS,
    ):  # fmt: skip
        router.message.register(not_an_admin, F.text == label)
    return router
