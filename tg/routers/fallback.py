"""Whatever no other handler took: a polite pointer back to the menu. Registered last."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from models import Account
from tg import keyboards
from tg.callbacks import answer_stale


async def unknown_message(message: Message, account: Account | None) -> None:
    await message.answer(
        _("Sorry, I did not understand that. Please choose from the menu below, or /bantuan."),
        reply_markup=keyboards.main_menu(account),
    )


def create_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="fallback")
    router.message.register(unknown_message)
    router.callback_query.register(answer_stale)  # a button no router took
    return router
