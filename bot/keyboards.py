"""Keyboards and callback data. Callback data is never trusted: handlers re-check it."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _

from bot import texts
from models import Account


class LanguageCB(CallbackData, prefix="lang"):
    code: str


class EraseCB(CallbackData, prefix="erase"):
    action: str  # "yes" | "no"
    token: str  # must equal the token kept in the FSM for this confirmation


def _reply(rows: list[list[str]], placeholder: str | None = None) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=label) for label in row] for row in rows],
        resize_keyboard=True,
        input_field_placeholder=placeholder,
    )


def main_menu(account: Account | None) -> ReplyKeyboardMarkup:
    """The reply keyboard that fits the user's roles and link state."""
    rows: list[list[str]] = []
    if account is not None and account.beneficiary_id is not None:
        rows.append([str(texts.BTN_STATUS)])
        rows.append([str(texts.BTN_ERASE)])
    else:
        rows.append([str(texts.BTN_LINK)])
    rows.append([str(texts.BTN_HELP), str(texts.BTN_LANGUAGE)])
    return _reply(rows)


def share_phone() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=str(texts.BTN_SHARE_PHONE), request_contact=True)],
            [KeyboardButton(text=str(texts.BTN_CANCEL))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def cancel_only(placeholder: str | None = None) -> ReplyKeyboardMarkup:
    return _reply([[str(texts.BTN_CANCEL)]], placeholder)


def language_choice() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=name, callback_data=LanguageCB(code=code).pack())]
            for code, name in texts.LANGUAGE_NAMES.items()
        ]
    )


def erase_confirm(token: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Yes, delete"), callback_data=EraseCB(action="yes", token=token).pack()
                ),
                InlineKeyboardButton(
                    text=_("No, keep it"), callback_data=EraseCB(action="no", token=token).pack()
                ),
            ]
        ]
    )
