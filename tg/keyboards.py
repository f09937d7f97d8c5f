"""Keyboards. Their callback data is defined in `tg.callbacks`."""

from __future__ import annotations

from typing import Any

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.i18n import gettext as _

from models import Account
from models.enums import CHOSEN_OUTCOMES, BroadcastStatus, RelaySender, Role
from services.accounts import role_scope
from tg import texts
from tg.callbacks import (
    NOTE_SKIP,
    AdminDisputeCB,
    AdminOutcomeCB,
    Answer,
    AttestCB,
    BasketAction,
    BasketCB,
    BroadcastAction,
    BroadcastCB,
    ComposeCB,
    ConfirmCB,
    DisputeAction,
    DisputeCB,
    DisputeConfirmCB,
    EraseCB,
    LanguageCB,
    LockCB,
    NapzaCB,
    NapzaStep,
    OutcomeCB,
    PartnerAction,
    PartnerCB,
    RelayCB,
    TicketCB,
)


def compose_choices(step: str, options: dict[str, Any], columns: int = 1) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(text=str(label), callback_data=ComposeCB(step=step, value=key).pack())
        for key, label in options.items()
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[buttons[i : i + columns] for i in range(0, len(buttons), columns)]
    )


def broadcast_controls(broadcast_id: int, status: str) -> InlineKeyboardMarkup | None:
    """Pause/resume and cancel while a broadcast is not finished."""
    if status in (BroadcastStatus.SCHEDULED, BroadcastStatus.RUNNING):
        first = (_("Pause"), BroadcastAction.PAUSE)
    elif status == BroadcastStatus.PAUSED:
        first = (_("Resume"), BroadcastAction.RESUME)
    else:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=first[0],
                    callback_data=BroadcastCB(action=first[1], id=broadcast_id).pack(),
                ),
                InlineKeyboardButton(
                    text=_("Cancel broadcast"),
                    callback_data=BroadcastCB(
                        action=BroadcastAction.CANCEL, id=broadcast_id
                    ).pack(),
                ),
            ]
        ]
    )


def choices(step: str, options: dict[Any, Any], columns: int = 1) -> InlineKeyboardMarkup:
    """One button per option of a question; the value is the option's key."""
    buttons = [
        InlineKeyboardButton(
            text=str(label), callback_data=NapzaCB(step=step, value=str(key).lower()).pack()
        )
        for key, label in options.items()
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[buttons[i : i + columns] for i in range(0, len(buttons), columns)]
    )


def rows(buttons: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    """One inline button per row, from (label, callback data) pairs."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=data)] for label, data in buttons
        ]
    )


def single(label: str, data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=label, callback_data=data)]]
    )


def _reply(rows: list[list[str]], placeholder: str | None = None) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=label) for label in row] for row in rows],
        resize_keyboard=True,
        input_field_placeholder=placeholder,
    )


def main_menu(account: Account | None) -> ReplyKeyboardMarkup:
    """The reply keyboard that fits the user's roles and link state."""
    rows: list[list[str]] = []
    if role_scope(account, Role.AGENT) is not None:
        rows.append([str(texts.BTN_NEW_REDEMPTION)])
        rows.append([str(texts.BTN_TODAY), str(texts.BTN_EXPORT)])
    if role_scope(account, Role.ADMIN) is not None:
        rows.append([str(texts.BTN_BROADCAST), str(texts.BTN_STATS)])
        rows.append([str(texts.BTN_INVITE), str(texts.BTN_PENDING_REFERRALS)])
        rows.append([str(texts.BTN_DISPUTES)])
    if account is not None and account.beneficiary_id is not None:
        rows.append([str(texts.BTN_STATUS), str(texts.BTN_SHOPPING_CODE)])
        rows.append([str(texts.BTN_NEARBY), str(texts.BTN_SHOPPING_LOCK)])
        rows.append([str(texts.BTN_NAPZA), str(texts.BTN_ERASE)])
    else:
        rows.append([str(texts.BTN_LINK)])
        rows.append([str(texts.BTN_NEARBY), str(texts.BTN_NAPZA)])
    rows.append([str(texts.BTN_HELP), str(texts.BTN_LANGUAGE)])
    return _reply(rows)


def share_location() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=str(texts.BTN_SHARE_LOCATION), request_location=True)],
            [KeyboardButton(text=str(texts.BTN_CANCEL))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def basket(items: tuple[str, ...]) -> InlineKeyboardMarkup:
    """The food list (two per row), then "total only", "done" and "cancel". No bundles."""
    buttons = [
        InlineKeyboardButton(
            text=str(texts.FOOD_NAMES[item]),
            callback_data=BasketCB(action=BasketAction.ITEM, item=item).pack(),
        )
        for item in items
    ]
    rows = [buttons[i : i + 2] for i in range(0, len(buttons), 2)]
    rows.append(
        [
            InlineKeyboardButton(
                text=_("Enter the total only"),
                callback_data=BasketCB(action=BasketAction.TOTAL).pack(),
            )
        ]
    )
    rows.append(
        [
            InlineKeyboardButton(
                text=_("Done"), callback_data=BasketCB(action=BasketAction.DONE).pack()
            ),
            InlineKeyboardButton(
                text=_("Cancel"), callback_data=BasketCB(action=BasketAction.CANCEL).pack()
            ),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def confirm_redemption(key: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Confirm"), callback_data=ConfirmCB(action=Answer.YES, key=key).pack()
                ),
                InlineKeyboardButton(
                    text=_("Cancel"), callback_data=ConfirmCB(action=Answer.NO, key=key).pack()
                ),
            ]
        ]
    )


def attest_presence(token: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Holder is here, KTP checked"),
                    callback_data=AttestCB(token=token).pack(),
                )
            ]
        ]
    )


def dispute_button(redemption_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Not me / report"),
                    callback_data=DisputeCB(redemption=redemption_id).pack(),
                )
            ]
        ]
    )


def dispute_confirm(redemption_id: int) -> InlineKeyboardMarkup:
    """Asked once before a report freezes the family's shopping codes."""

    def answer(value: Answer) -> str:
        return DisputeConfirmCB(redemption=redemption_id, answer=value).pack()

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=_("Yes, report it"), callback_data=answer(Answer.YES)),
                InlineKeyboardButton(
                    text=_("No, it was me"),
                    callback_data=DisputeConfirmCB(
                        redemption=redemption_id, answer=Answer.NO
                    ).pack(),
                ),
            ]
        ]
    )


def lock_choice(locked: bool) -> InlineKeyboardMarkup:
    label = _("Unlock shopping") if locked else _("Lock now")
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=LockCB(locked=not locked).pack())]
        ]
    )


def admin_dispute(redemption_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("Reverse #{id}").format(id=redemption_id),
                    callback_data=AdminDisputeCB(
                        action=DisputeAction.REVERSE, redemption=redemption_id
                    ).pack(),
                ),
                InlineKeyboardButton(
                    text=_("Genuine #{id}").format(id=redemption_id),
                    callback_data=AdminDisputeCB(
                        action=DisputeAction.DISMISS, redemption=redemption_id
                    ).pack(),
                ),
            ]
        ]
    )


def share_phone() -> ReplyKeyboardMarkup:
    """The contact button (Telegram vouches for the number), and the way in for families
    without a phone in the registry: an activation code."""
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=str(texts.BTN_SHARE_PHONE), request_contact=True)],
            [KeyboardButton(text=str(texts.BTN_ACTIVATION_CODE))],
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
                    text=_("Yes, delete"),
                    callback_data=EraseCB(action=Answer.YES, token=token).pack(),
                ),
                InlineKeyboardButton(
                    text=_("No, keep it"),
                    callback_data=EraseCB(action=Answer.NO, token=token).pack(),
                ),
            ]
        ]
    )


# --- Napza -------------------------------------------------------------------------


def napza_continue() -> InlineKeyboardMarkup:
    """Under the emergency numbers: on to the first question."""
    return single(_("Continue"), NapzaCB(step=NapzaStep.GO).pack())


def napza_skip_note() -> InlineKeyboardMarkup:
    return single(_("Skip"), NapzaCB(step=NapzaStep.NOTE, value=NOTE_SKIP).pack())


def napza_consent() -> InlineKeyboardMarkup:
    return choices(
        NapzaStep.CONSENT,
        {Answer.YES: _("Yes, send it"), Answer.NO: _("No, do not send")},
        columns=2,
    )


def napza_ticket(request_id: int, ticket: str, chat: bool) -> InlineKeyboardMarkup:
    """Under an open request in /tiket: cancel it, and (`chat`: accepted) chat about it."""
    buttons = [(_("Cancel this request"), TicketCB(ticket=ticket).pack())]
    if chat:
        buttons.insert(0, (_("Chat with the organisation"), RelayCB(request=request_id).pack()))
    return rows(buttons)


def napza_chat(request_id: int) -> InlineKeyboardMarkup:
    """For the requester of an accepted request: open the relayed chat."""
    return single(_("Chat with the organisation"), RelayCB(request=request_id).pack())


def napza_reply(request_id: int, to: RelaySender) -> InlineKeyboardMarkup:
    """Under a relayed message: `to` is the side that reads it and may answer."""
    if to is RelaySender.REQUESTER:
        return single(_("Reply"), RelayCB(request=request_id).pack())
    return single(_("Reply"), PartnerCB(action=PartnerAction.REPLY, request=request_id).pack())


def napza_offer(request_id: int) -> InlineKeyboardMarkup:
    """Under an offer to a partner's staff."""
    return rows(
        [
            (_("Accept"), PartnerCB(action=PartnerAction.ACCEPT, request=request_id).pack()),
            (_("Decline"), PartnerCB(action=PartnerAction.DECLINE, request=request_id).pack()),
        ]
    )


def napza_case(request_id: int) -> InlineKeyboardMarkup:
    """For the staff member who accepted a request."""
    return rows(
        [
            (_("Reply"), PartnerCB(action=PartnerAction.REPLY, request=request_id).pack()),
            (
                _("Close the case"),
                PartnerCB(action=PartnerAction.CLOSE, request=request_id).pack(),
            ),
        ]
    )


def napza_outcomes(request_id: int, admin: bool = False) -> InlineKeyboardMarkup:
    """The outcomes a case is closed with: partner staff's (`OutcomeCB`) or, for an
    escalated request, an admin's (`AdminOutcomeCB`)."""
    button = AdminOutcomeCB if admin else OutcomeCB
    return rows(
        [
            (str(label), button(request=request_id, outcome=key).pack())
            for key, label in texts.OUTCOME_NAMES.items()
            if key in CHOSEN_OUTCOMES
        ]
    )
