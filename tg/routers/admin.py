"""Admins: transaction disputes (reverse or dismiss), inviting and removing e-Warong agents."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from models import Account
from models.enums import CHOSEN_OUTCOMES, RequestStatus, Role
from services import Session, audit, invites, revocation, stats
from services.bpnt import disputes as sale_disputes
from services.bpnt.disputes import ReversalResult
from services.napza import actions as napza
from services.revocation import Revoked
from tg import keyboards, texts
from tg.callbacks import AdminDisputeCB, AdminOutcomeCB, alert
from tg.context import AppContext
from tg.filters import HasRole
from tg.menus import ADMIN_COMMANDS
from tg.routers.partner import announce_closed
from tg.states import ReversalFlow
from tg.views import admin as views


async def disputes(message: Message, session: Session, admin_scope: str, locale: str) -> None:
    found = await sale_disputes.open_disputes(session, admin_scope, limit=20)
    for redemption, ewarong in found:
        await message.answer(
            views.open_dispute(redemption, ewarong, locale),
            reply_markup=keyboards.admin_dispute(redemption.id),
        )
    if not found:
        await message.answer(_("There are no open transaction disputes."))


async def dispute_action(
    query: CallbackQuery,
    callback_answer: CallbackAnswer,
    callback_data: AdminDisputeCB,
    state: FSMContext,
    session: Session,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    if not await sale_disputes.sale_in_scope(session, callback_data.redemption, admin_scope):
        raise SkipHandler()
    if callback_data.action == "dismiss":
        done = await sale_disputes.dismiss_dispute(
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
    if not await sale_disputes.is_open_dispute(session, callback_data.redemption):
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
    session: Session,
    account: Account,
    admin_scope: str,
    ctx: AppContext,
) -> None:
    data = await state.get_data()
    if not await sale_disputes.sale_in_scope(session, data["redemption"], admin_scope):
        await state.clear()
        await message.answer(_("This button is no longer valid."))
        return
    result = await sale_disputes.reverse(
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
    session: Session,
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
    try:  # unknown, inactive, or outside this admin's region
        payload = await invites.create_invite(
            session, role, code, created_by=account.telegram_id, now=ctx.now(),
            inviter_scope=admin_scope,
        )  # fmt: skip
    except invites.InviteError:
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
    session: Session,
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
    session: Session,
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
    session: Session,
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
    session: Session,
    account: Account,
    ctx: AppContext,
    bot: Bot,
    i18n: I18n,
) -> None:
    """An escalated Napza request: the admin records what was arranged, which closes it."""
    request = await napza.close_escalated(
        session, callback_data.request, account.telegram_id, callback_data.outcome, ctx.now()
    )
    if request is None:
        raise SkipHandler()
    await announce_closed(query, bot, i18n, session, request)


async def statistics(
    message: Message, session: Session, account: Account, admin_scope: str, locale: str,
    ctx: AppContext,
) -> None:  # fmt: skip
    """Linked KPM by programme and region, today's redemptions, referrals, broadcasts."""
    figures = await stats.overview(session, admin_scope, ctx.now())
    await audit.record(session, "admin.statistics", actor=account.telegram_id, subject_type="scope",
                       subject_id=admin_scope or "national")  # fmt: skip
    await message.answer(views.statistics(figures, locale))


async def pending_referrals(
    message: Message, session: Session, account: Account, admin_scope: str,
    locale: str, ctx: AppContext,
) -> None:  # fmt: skip
    """Open Napza referrals in the admin's region, escalated first; no requester identity."""
    items = await stats.pending_referrals(session, admin_scope, ctx.now())
    await audit.record(
        session, "napza.pending_listed", actor=account.telegram_id, subject_type="scope",
        subject_id=admin_scope or "national", count=len(items),
    )  # fmt: skip
    if not items:
        await message.answer(_("There are no pending Napza referrals in your area."))
        return
    for item in items:
        escalated = item.request.status == RequestStatus.ESCALATED
        await message.answer(
            views.pending_referral(item, locale),
            reply_markup=keyboards.napza_outcomes(item.request.id, admin=True)
            if escalated
            else None,
        )


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
    router.callback_query.register(
        napza_outcome, admin, AdminOutcomeCB.filter(F.outcome.in_(CHOSEN_OUTCOMES))
    )
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
