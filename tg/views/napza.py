"""Napza texts, in the current locale (HTML parse mode): the requester's questionnaire,
tickets and chat, and what partner staff read when they act on a request.

Everything interpolated from data is HTML-escaped here. `offer_text` (what a partner
sees of a request) and `region` are shared with the notices of `tg.notify.napza`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from aiogram.utils.i18n import gettext as _

from models import HelpRequest
from tg import texts
from tg.formatting import local_datetime

# --- what a partner sees of a request ----------------------------------------------


def region(name: str) -> str:
    return _("Region: {name}").format(name=escape(name))


def offer_text(request: HelpRequest, region_name: str, locale: str) -> str:
    """The minimum a partner needs: help, age group, region, urgency, note. No identity."""
    lines = [
        _("<b>Help request {ticket}</b>").format(ticket=request.ticket),
        _("Help: {value}").format(value=texts.HELP_TYPE_NAMES[request.help_type]),
        _("Age group: {value}").format(value=texts.AGE_GROUP_NAMES[request.age_group]),
        region(region_name),
        _("Urgency: {value}").format(value=texts.URGENCY_NAMES[request.urgent]),
    ]
    if request.note:
        lines.append(_("Note: {note}").format(note=escape(request.note)))
    if request.sla_due_at is not None:
        lines.append(
            _("Please answer before {when}.").format(
                when=local_datetime(request.sla_due_at, locale, request.region_code)
            )
        )
    return "\n".join(lines)


# --- the questionnaire -------------------------------------------------------------


def emergency() -> str:
    """The emergency numbers come first, before any question."""
    return _(
        "<b>Is someone in danger right now?</b>\n"
        "Call <b>112</b> (emergency) or <b>119</b> (ambulance) at once, or BNN's hotline "
        "<b>184</b>.\n\n"
        "Otherwise I can pass a confidential request for help to a partner organisation "
        "(rehabilitation institution, puskesmas) near you. No name or NIK is needed."
    )


def ask_for_whom() -> str:
    return _("Who needs help?")


def ask_age_group() -> str:
    return _("How old is the person who needs help?")


def ask_help_type() -> str:
    return _("What help is needed?")


def ask_region() -> str:
    return _(
        "Where? Type the name of your regency or city (for example <i>Bandung</i>), "
        "or share your location."
    )


def region_not_found() -> str:
    return _(
        "I could not find that regency or city. Please type its name again, "
        "for example <i>Kota Bandung</i> or <i>Sleman</i>, or share your location."
    )


def which_region(found: Sequence[tuple[str, str]]) -> str:
    """The regencies the typed name may mean; one match is asked about by name."""
    if len(found) == 1:
        return _("Did you mean {name}? Press it to go on, or type the name again.").format(
            name=escape(found[0][1])
        )
    return _("Which one?")


def pick_a_shown_place() -> str:
    return _("Please pick one of the places shown.")


def location_not_placed() -> str:
    return _("I could not tell the regency from that location. Please type its name.")


def region_wrong() -> str:
    return _("Please type the name of your regency or city, or share your location.")


def ask_urgency() -> str:
    return _("How urgent is it?")


def ask_note() -> str:
    return _(
        "Optional: a short note for the organisation (at most 500 characters). "
        "Please do not write names or NIK. Or press Skip."
    )


def note_too_long(count: int) -> str:
    return _(
        "That note has {count} characters; at most 500 fit. Please shorten it, or press Skip."
    ).format(count=count)


def note_wrong() -> str:
    return _("Please type the note as text, or press Skip.")


def ask_consent() -> str:
    return _(
        "I will share this request (help needed, age group, region, urgency and your note) "
        "with one partner organisation that covers your area. Your name and Telegram "
        "account are not shared; replies come through this bot. Do you agree?"
    )


def nothing_sent() -> str:
    return _("Nothing was sent. You can start again any time with /napza.")


def sent(ticket: str, escalated: bool) -> str:
    """The request is stored; `escalated`: no partner covers the region, the admins were told."""
    if escalated:
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
    return text.format(ticket=ticket)


def use_the_buttons() -> str:
    return _("Please answer with the buttons above, or /batal to stop.")


# --- tickets -----------------------------------------------------------------------


def no_requests() -> str:
    return _("You have no Napza help requests.")


def ticket_status(request: HelpRequest) -> str:
    status = texts.REQUEST_STATUS_NAMES.get(request.status, request.status)
    return _("Ticket <b>{ticket}</b>: {status}").format(ticket=request.ticket, status=status)


def ticket_cancelled(ticket: str) -> str:
    return _("Ticket <b>{ticket}</b> is cancelled.").format(ticket=ticket)


# --- the relayed chat --------------------------------------------------------------


def requester_chat_opened() -> str:
    return _(
        "Type your message for the organisation; it is passed on without your Telegram "
        "account. /batal ends the chat."
    )


def partner_chat_opened(ticket: str) -> str:
    return _(
        "Type your message for the requester of {ticket}; it goes through the bot. "
        "/batal ends the chat."
    ).format(ticket=ticket)


def relay_too_long() -> str:
    return _("That message is too long; please send at most 2000 characters.")


def chat_ended() -> str:
    return _("This case is closed; the chat has ended.")


def passed_on() -> str:
    return _("Passed on.")


def relay_text_only() -> str:
    return _("Only text can be passed on. /batal ends the chat.")


# --- partner staff -----------------------------------------------------------------


def colleague_took_it() -> str:
    return _("A colleague has already taken this request.")


def taken_by(name: str) -> str:
    """Under the offer the other staff members got, once one of them accepted."""
    return _("Taken by {name}.").format(name=escape(name))


def you_took(ticket: str) -> str:
    return _("You took {ticket}. The requester has been told how to reach you.").format(
        ticket=ticket
    )


def ask_outcome(ticket: str) -> str:
    return _("Outcome of {ticket}?").format(ticket=ticket)


def case_closed(request: HelpRequest) -> str:
    """In place of the outcome buttons once a partner or an admin closed the case."""
    return _("Case {ticket} closed: {outcome}.").format(
        ticket=request.ticket, outcome=texts.OUTCOME_NAMES[request.outcome or ""]
    )
