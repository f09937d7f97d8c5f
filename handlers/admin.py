"""Admins: transaction disputes (reverse or dismiss), inviting and removing e-Warong agents."""

from __future__ import annotations

from html import escape

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot import keyboards, texts
from bot.context import AppContext
from bot.filters import HasRole
from bot.formatting import local_datetime, money
from bot.keyboards import AdminDisputeCB
from bot.services import invites, shopping
from bot.services.shopping import ReversalResult
from handlers.states import ReversalFlow
from models import Account


async def disputes(message: Message, session: AsyncSession, locale: str) -> None:
    open_ = await shopping.open_disputes(session)
    if not open_:
        await message.answer(_("There are no open transaction disputes."))
        return
    for redemption in open_:
        await message.answer(
            _("Dispute on transaction #{id}: {amount} at {ewarong}, {when}.").format(
                id=redemption.id,
                amount=money(redemption.total, locale),
                ewarong=escape(redemption.ewarong_code),
                when=local_datetime(redemption.created_at, locale, None),
            ),
            reply_markup=keyboards.admin_dispute(redemption.id),
        )


async def dispute_action(
    query: CallbackQuery,
    callback_data: AdminDisputeCB,
    state: FSMContext,
    session: AsyncSession,
    account: Account,
    ctx: AppContext,
) -> None:
    if callback_data.action == "dismiss":
        done = await shopping.dismiss_dispute(
            session, callback_data.redemption, admin=account.telegram_id, now=ctx.now()
        )
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.edit_text(
                _("Transaction #{id} found genuine; the family can shop again.").format(
                    id=callback_data.redemption
                )
                if done
                else _("This dispute is already closed.")
            )
        return
    await state.set_state(ReversalFlow.reason)
    await state.update_data(redemption=callback_data.redemption)
    await query.answer()
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
    ctx: AppContext,
) -> None:
    data = await state.get_data()
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
    }[result].format(id=data["redemption"])
    await message.answer(text, reply_markup=keyboards.main_menu(account))


async def invite_agent(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    account: Account,
    bot: Bot,
    ctx: AppContext,
) -> None:
    code = (command.args or "").strip()
    if not code or len(code) > 32:
        await message.answer(_("Usage: /undang_agen E-WARONG-CODE"))
        return
    try:
        payload = await invites.create_invite(
            session, "agent", code, created_by=account.telegram_id, now=ctx.now()
        )
    except ValueError:
        await message.answer(_("No active e-Warong has that code."))
        return
    me = await bot.me()
    await message.answer(
        _(
            "One-time link for a new agent of {code} (valid 48 hours, one use):\n{link}\n"
            "Send it only to the agent."
        ).format(code=escape(code), link=invites.deep_link(me.username or "", payload))
    )


async def remove_agent(
    message: Message, command: CommandObject, session: AsyncSession, account: Account
) -> None:
    parts = (command.args or "").split()
    if len(parts) != 2 or not parts[0].isdigit():
        await message.answer(_("Usage: /hapus_agen TELEGRAM_ID E-WARONG-CODE"))
        return
    removed = await invites.remove_role(
        session, int(parts[0]), "agent", parts[1], actor=account.telegram_id
    )
    await message.answer(_("Agent removed.") if removed else _("No such agent at that e-Warong."))


async def not_an_admin(message: Message) -> None:
    await message.answer(_("This command is only for admins."))


def create_router() -> Router:
    router = Router(name="admin")
    admin = HasRole("admin")
    router.message.register(disputes, admin, F.text == texts.BTN_DISPUTES)
    router.message.register(disputes, admin, Command("sengketa"))
    router.callback_query.register(dispute_action, admin, AdminDisputeCB.filter())
    router.message.register(reversal_reason, admin, ReversalFlow.reason, F.text)
    router.message.register(invite_agent, admin, Command("undang_agen"))
    router.message.register(remove_agent, admin, Command("hapus_agen"))
    router.message.register(not_an_admin, Command("sengketa", "undang_agen", "hapus_agen"))
    router.message.register(not_an_admin, F.text == texts.BTN_DISPUTES)
    return router
