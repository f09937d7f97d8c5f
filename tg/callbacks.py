"""Callback data of every inline button, and the one stale-button answer.

Callback data is never trusted. Its fields are typed (`RowId`, the enums below), so a
forged or mangled value fails `CB.filter()` itself and reaches the router's stale-button
handler (`add_stale_handler`) instead of a step; handlers still re-check everything the
button claims (state, token, scope) and, when it no longer holds, `raise SkipHandler()`
so that the same stale-button answer is given.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery
from aiogram.utils.callback_answer import CallbackAnswer
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from models.enums import RequestOutcome

# A row id in callback data: a forged 0, negative or beyond-BIGINT id is no button the bot
# made; it fails the filter ("no longer valid") instead of reaching a query that the
# database driver refuses (SQLite: OverflowError, PostgreSQL: out of range).
RowId = Annotated[int, Field(gt=0, lt=2**63)]


class Answer(StrEnum):
    YES = "yes"
    NO = "no"


class BasketAction(StrEnum):
    ITEM = "item"
    TOTAL = "total"
    DONE = "done"
    CANCEL = "cancel"


class DisputeAction(StrEnum):
    REVERSE = "reverse"
    DISMISS = "dismiss"


class NapzaStep(StrEnum):
    GO = "go"
    WHOM = "whom"
    AGE = "age"
    HELP = "help"
    REGION = "region"
    URGENT = "urgent"
    NOTE = "note"
    CONSENT = "consent"


class PartnerAction(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    REPLY = "reply"
    CLOSE = "close"


class ComposeStep(StrEnum):
    AUDIENCE = "aud"
    REGION = "region"
    LANGUAGE = "lang"
    VERSION = "ver"
    CONFIRM = "go"


class BroadcastAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class LanguageCB(CallbackData, prefix="lang"):
    code: str


class EraseCB(CallbackData, prefix="erase"):
    action: Answer
    token: str  # must equal the token kept in the FSM for this confirmation


class BasketCB(CallbackData, prefix="bsk"):
    action: BasketAction
    item: str = ""


class ConfirmCB(CallbackData, prefix="rdm"):
    action: Answer
    key: str  # the draft's idempotency key


class AttestCB(CallbackData, prefix="att"):
    token: str  # must equal the token kept in the FSM for this attestation


class DisputeCB(CallbackData, prefix="dsp"):
    """ "Not me / report" on a receipt: asks before anything is frozen."""

    redemption: RowId


class DisputeConfirmCB(CallbackData, prefix="dspc"):
    """The answer to "report this transaction?"."""

    redemption: RowId
    answer: Answer


class LockCB(CallbackData, prefix="lock"):
    locked: bool


class AdminDisputeCB(CallbackData, prefix="adsp"):
    action: DisputeAction
    redemption: RowId


class NapzaCB(CallbackData, prefix="npz"):
    """An answer in the Napza questionnaire. What `value` may be depends on the step (a
    `ForWhom`, `AgeGroup`, `HelpType`, region code, "true"/"false", `NOTE_SKIP`, an
    `Answer`): each step's handler filter checks it, so a forged value is still stale."""

    step: NapzaStep
    value: str = ""


NOTE_SKIP = "skip"  # the NapzaCB value of the note step's Skip button


class PartnerCB(CallbackData, prefix="prt"):
    action: PartnerAction
    request: RowId


class OutcomeCB(CallbackData, prefix="out"):
    request: RowId
    outcome: RequestOutcome  # handlers also require one of `CHOSEN_OUTCOMES`


class AdminOutcomeCB(CallbackData, prefix="aout"):
    request: RowId
    outcome: RequestOutcome  # handlers also require one of `CHOSEN_OUTCOMES`


class RelayCB(CallbackData, prefix="rly"):
    request: RowId


class TicketCB(CallbackData, prefix="tkt"):
    ticket: str


class ComposeCB(CallbackData, prefix="bcc"):
    """A choice while composing a broadcast (only valid in that step of the flow)."""

    step: ComposeStep
    value: str


class BroadcastCB(CallbackData, prefix="bc"):
    """Pause, resume or cancel a stored broadcast."""

    action: BroadcastAction
    id: RowId


def stale_text() -> str:
    return _("This button is no longer valid.")


async def answer_stale(query: CallbackQuery, callback_answer: CallbackAnswer) -> None:
    """The answer to a button that is not (or no longer) one the bot would act on."""
    alert(callback_answer, stale_text())


def add_stale_handler(router: Router, *callbacks: type[CallbackData]) -> None:
    """Register, last in `router`, the one answer for its buttons that no step took:
    forged values, buttons from an earlier flow, checks a handler refused
    (`raise SkipHandler()`). Call it after every other callback handler."""
    prefixes = {callback.__prefix__ for callback in callbacks}
    router.callback_query.register(
        answer_stale, F.data.func(lambda data: (data or "").split(":", 1)[0] in prefixes)
    )


def alert(callback_answer: CallbackAnswer, text: str) -> None:
    """Answer the press with `text` in an alert the user must close."""
    callback_answer.text = text
    callback_answer.show_alert = True
