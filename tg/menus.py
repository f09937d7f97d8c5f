"""The commands menu Telegram shows beside the text field.

Everyone gets the public commands (per language: Indonesian by default, English for
English apps). Admins additionally get their own commands in a menu scoped to their
chat alone (BotCommandScopeChat), in their language, so no one else ever sees them;
it is set at startup for the admins known then and again whenever an admin sends
/start (e.g. after `bansos-bot admin add`).
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import async_sessionmaker

from models import Account
from services import Session, accounts
from services.accounts import locale_for

log = logging.getLogger(__name__)

COMMANDS = ("start", "status", "kode", "napza", "tiket", "bantuan", "bahasa", "batal")
ADMIN_COMMANDS = (
    "siaran", "statistik", "rujukan", "sengketa", "undang_agen", "undang_mitra", "hapus_agen",
    "hapus_mitra", "hapus_admin", "nonaktif_ewarong", "nonaktif_mitra",
)  # fmt: skip
STARTUP_ADMIN_MENUS = 500  # more admins get their menu at their next /start


def _descriptions() -> dict[str, str]:
    return {
        "start": _("Main menu"),
        "status": _("My PKH and BPNT status"),
        "kode": _("BPNT shopping code"),
        "napza": _("Confidential Napza help"),
        "tiket": _("My Napza tickets"),
        "bantuan": _("Help"),
        "bahasa": _("Language"),
        "batal": _("Cancel what I am doing"),
        "siaran": _("New broadcast"),
        "statistik": _("Statistics of my area"),
        "rujukan": _("Pending Napza referrals"),
        "sengketa": _("Transaction disputes"),
        "undang_agen": _("Invite an e-Warong agent"),
        "undang_mitra": _("Invite partner staff"),
        "hapus_agen": _("Remove an agent"),
        "hapus_mitra": _("Remove partner staff"),
        "hapus_admin": _("Remove an admin"),
        "nonaktif_ewarong": _("Deactivate an e-Warong"),
        "nonaktif_mitra": _("Deactivate a partner organisation"),
    }


def command_menu(i18n: I18n, locale: str, *, admin: bool = False) -> list[BotCommand]:
    """The commands menu in one language; with the admin commands for an admin."""
    names = COMMANDS + (ADMIN_COMMANDS if admin else ())
    with i18n.context(), i18n.use_locale(locale):
        descriptions = _descriptions()
    return [BotCommand(command=name, description=descriptions[name]) for name in names]


async def set_admin_menu(bot: Bot, i18n: I18n, account: Account) -> None:
    """The admin's own menu, in their language, visible in their chat only."""
    locale = locale_for(account, account.language_code, i18n.default_locale)
    await bot.set_my_commands(
        command_menu(i18n, locale, admin=True),
        scope=BotCommandScopeChat(chat_id=account.telegram_id),
    )


async def set_menus(bot: Bot, i18n: I18n, sessionmaker: async_sessionmaker[Session]) -> None:
    """At startup: the public menu per language, then each known admin's own menu."""
    scope = BotCommandScopeDefault()
    await bot.set_my_commands(command_menu(i18n, i18n.default_locale), scope=scope)
    for locale in i18n.available_locales:
        await bot.set_my_commands(command_menu(i18n, locale), scope=scope, language_code=locale)
    async with sessionmaker() as session:
        admins = await accounts.admins(session, limit=STARTUP_ADMIN_MENUS)
    for account in admins:
        try:
            await set_admin_menu(bot, i18n, account)
        except Exception as error:  # a chat Telegram does not know yet: set at /start
            log.info("admin menu not set at startup: %s", type(error).__name__)
