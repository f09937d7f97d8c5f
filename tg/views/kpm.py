"""Message texts built from service results, in the current locale (HTML parse mode).

Everything interpolated from data is HTML-escaped here.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from models import Beneficiary, LedgerEntry
from models.enums import DisbursementStatus
from services.identity import DateProblem, mask_name, mask_nik
from services.registry.status import AidStatus, BpntStatus, PkhStatus, StageLine
from tg import texts
from tg.formatting import local_datetime, long_date, money, month_name

BPNT_PERIOD = re.compile(r"^\d{4}-\d{2}\b")


def greeting(first_name: str, linked: Beneficiary | None) -> str:
    name = escape(first_name)
    if linked is None:
        return _(
            "Hello, {name}! I am the social-assistance service bot.\n\n"
            "Link your KPM account to check your PKH and BPNT/Sembako status. "
            "Press <b>{link}</b> below."
        ).format(name=name, link=escape(str(texts.BTN_LINK)))
    return _(
        "Hello, {name}! Your account is linked to the KPM data of <b>{kpm}</b>.\n"
        "Choose a menu below."
    ).format(name=name, kpm=escape(mask_name(linked.name)))


def help_text(is_agent: bool = False, is_admin: bool = False, is_partner: bool = False) -> str:
    """What each menu item does; staff see their own items too."""
    parts = [
        _(
            "<b>Menu</b>\n"
            "• <b>{link}</b>: connect this Telegram account to your family's KPM data. "
            "You share your phone number with the button, then type your NIK and birth date "
            "(no phone in your KPM data: NIK and an activation code from your pendamping).\n"
            "• <b>{status}</b>: your PKH components, each stage (tahap) this year, and your "
            "BPNT/Sembako month, balance and last transactions.\n"
            "• <b>{code}</b>: a 12-digit code, valid 10 minutes, to show the e-Warong agent "
            "when you buy food with BPNT.\n"
            "• <b>{nearby}</b>: share your location to see the 3 nearest e-Warongs.\n"
            "• <b>{lock}</b>: stop all BPNT purchases (a lost card) and allow them again.\n"
            "• <b>{napza}</b> or /napza: confidential help with drug abuse for you or a family "
            "member, from a partner organisation near you; /tiket shows your requests.\n"
            "• <b>{erase}</b>: unlink this account and delete what the bot keeps about you. "
            "The ministry's registry is not changed.\n"
            "• <b>{language}</b>: Bahasa Indonesia or English."
        ).format(
            link=escape(str(texts.BTN_LINK)),
            status=escape(str(texts.BTN_STATUS)),
            code=escape(str(texts.BTN_SHOPPING_CODE)),
            nearby=escape(str(texts.BTN_NEARBY)),
            lock=escape(str(texts.BTN_SHOPPING_LOCK)),
            napza=escape(str(texts.BTN_NAPZA)),
            erase=escape(str(texts.BTN_ERASE)),
            language=escape(str(texts.BTN_LANGUAGE)),
        )
    ]
    if is_agent:
        parts.append(
            _(
                "<b>e-Warong agent</b>\n"
                "• <b>{new}</b>: type the family's shopping code (or KKS number), pick the "
                "foods with quantity and price, check the summary and confirm.\n"
                "• <b>{today}</b>: today's transactions with the total.\n"
                "• <b>{export}</b>: today's transactions as a CSV file."
            ).format(
                new=escape(str(texts.BTN_NEW_REDEMPTION)),
                today=escape(str(texts.BTN_TODAY)),
                export=escape(str(texts.BTN_EXPORT)),
            )
        )
    if is_partner:
        parts.append(
            _(
                "<b>Partner organisation</b>\n"
                "Help requests for your organisation arrive here with <b>Accept</b> and "
                "<b>Decline</b>. After accepting, <b>Reply</b> chats with the requester through "
                "the bot and <b>Close the case</b> records the outcome."
            )
        )
    if is_admin:
        parts.append(
            _(
                "<b>Admin</b>\n"
                "• <b>{disputes}</b> or /sengketa: reported transactions; reverse or dismiss.\n"
                "/undang_agen CODE: a one-time link for a new e-Warong agent.\n"
                "/undang_mitra CODE: a one-time link for a partner organisation's staff.\n"
                "/hapus_agen TELEGRAM_ID CODE: remove an agent."
            ).format(disputes=escape(str(texts.BTN_DISPUTES)))
        )
    parts.append(
        _(
            "<b>Commands</b>\n"
            "/start: main menu\n/bantuan or /help: this help\n"
            "/bahasa or /settings: language\n/batal or /cancel: stop what you are doing\n"
            "/berhenti: no announcements; /langganan: announcements again"
        )
    )
    return "\n\n".join(parts)


def _status_name(status: str | None) -> str:
    return str(texts.STATUS_NAMES[status]) if status else _("not announced yet")


def _stage_line(line: StageLine, locale: str) -> str:
    label = _("Stage {number}").format(number=line.stage[1:])
    parts = [f"{label}: {_status_name(line.status)}"]
    if line.amount is not None:
        parts.append(money(line.amount, locale))
    text = " — ".join(parts)
    if line.date is not None and line.status == DisbursementStatus.DISALURKAN:
        text += f" ({long_date(line.date, locale)})"
    return text


def _pkh_block(pkh: PkhStatus, locale: str) -> list[str]:
    if not pkh.enrolled:
        return [_("<b>PKH</b>: not registered as a PKH family.")]
    lines = [_("<b>PKH {year}</b>: registered").format(year=pkh.year)]
    if pkh.components:
        lines.append(_("Components (yearly amount):"))
        lines += [
            f"• {escape(str(texts.COMPONENT_NAMES.get(c.component, c.component)))} × {c.count}"
            f" — {money(c.yearly_amount, locale)}"
            for c in pkh.components
        ]
        lines.append(_("Total per year: {amount}").format(amount=money(pkh.yearly_total, locale)))
    lines.append(_("Stages in {year}:").format(year=pkh.year))
    lines += [f"• {_stage_line(stage, locale)}" for stage in pkh.stages]
    if pkh.next_stage is None:
        lines.append(_("All stages of this year have been paid."))
    else:
        lines.append(_("Next stage: {stage}").format(stage=_stage_line(pkh.next_stage, locale)))
    return lines


def _entry_when(entry: LedgerEntry, locale: str, region_code: str) -> str:
    """Credits by the month they are for; everything else by when it happened."""
    if entry.disbursement_id is not None and entry.reference and BPNT_PERIOD.match(entry.reference):
        return month_name(entry.reference[:7], locale)
    return local_datetime(entry.created_at, locale, region_code)


def _bpnt_block(bpnt: BpntStatus, locale: str, region_code: str) -> list[str]:
    if not bpnt.enrolled:
        return [_("<b>BPNT/Sembako</b>: not registered as a BPNT family.")]
    month = month_name(bpnt.period, locale)
    this_month = _status_name(bpnt.month_status)
    if bpnt.month_amount is not None:
        this_month += f" — {money(bpnt.month_amount, locale)}"
    lines = [
        _("<b>BPNT/Sembako</b> {month}: {status}").format(month=month, status=this_month),
        _("Current balance: <b>{amount}</b>").format(amount=money(bpnt.balance, locale)),
    ]
    if bpnt.recent:
        lines.append(_("Last transactions:"))
        for entry in bpnt.recent:
            kind = texts.LEDGER_KIND_NAMES.get(entry.kind, entry.kind)
            sign = "+" if entry.amount > 0 else ""
            lines.append(
                f"• {_entry_when(entry, locale, region_code)} — "
                f"{escape(str(kind))} {sign}{money(entry.amount, locale)}"
            )
    else:
        lines.append(_("No transactions yet."))
    return lines


def aid_status(status: AidStatus, locale: str) -> str:
    beneficiary = status.beneficiary
    header = _("<b>Aid status</b> for {name} (NIK {nik})").format(
        name=escape(mask_name(beneficiary.name)), nik=mask_nik(beneficiary.nik_last4)
    )
    blocks = [
        header,
        "\n".join(_pkh_block(status.pkh, locale)),
        "\n".join(_bpnt_block(status.bpnt, locale, beneficiary.village_code)),
        _("Amounts and statuses are from the ministry's data as last imported."),
    ]
    return "\n\n".join(blocks)


def locked(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return _(
        "Too many attempts that did not match. For your safety, linking is locked for "
        "{minutes} more minutes. Please try again later."
    ).format(minutes=minutes)


ROLE_NAMES = {
    "agent": __("agent of e-Warong {scope}"),
    "partner": __("staff of partner organisation {scope}"),
    "admin": __("admin"),
}


def notice_text(kind: str, params: dict[str, Any], locale: str) -> str:
    """The text of an outbox notice (`services.outbox.NoticeKind`), in the current
    locale; parameters are codes only."""
    code = escape(str(params.get("code", "")))
    if kind == "link_attempt":
        return _(
            "Someone just tried to link your KPM data to another Telegram account. It was "
            "refused, and this account stays linked. If it was not you, keep your KTP and "
            "KKS card safe; if you changed phones, ask your pendamping or the village office."
        )
    if kind == "unlinked":
        return _(
            "An officer has unlinked this Telegram account from your KPM data, and open "
            "shopping codes are cancelled. Your aid is not affected. If you did not ask for "
            "this, contact your pendamping or the village office."
        )
    if kind == "role_removed":
        role = str(ROLE_NAMES.get(str(params.get("role")), ROLE_NAMES["admin"])).format(
            scope=escape(str(params.get("scope", "")))
        )
        return _("You are no longer {role}. Your menu has changed; press /start.").format(role=role)
    if kind == "dispute_reversed":
        return _(
            "Your report on transaction #{id} was checked: it was not your purchase, so "
            "{amount} is back in your BPNT balance. You can shop again."
        ).format(id=int(params.get("id", 0)), amount=money(int(params.get("amount", 0)), locale))
    if kind == "dispute_dismissed":
        return _(
            "Your report on transaction #{id} was checked: the purchase was found genuine. "
            "You can shop again. If you disagree, ask your pendamping or the village office."
        ).format(id=int(params.get("id", 0)))
    if kind == "ewarong_deactivated":
        return _(
            "e-Warong {code} has been deactivated: no transaction can be made there until an "
            "admin activates it again."
        ).format(code=code)
    if kind == "partner_deactivated":
        return _(
            "Partner organisation {code} has been deactivated: it gets no new help requests."
        ).format(code=code)
    raise ValueError(f"unknown notice kind {kind!r}")


def birth_date_refused(problem: DateProblem) -> str:
    """Why a typed birth date was not taken, and how to type it."""
    if problem is DateProblem.NO_SUCH_DAY:
        return _(
            "That date does not exist in the calendar. Please check the day and the month "
            "and type it again, like 15-07-1985."
        )
    if problem is DateProblem.NOT_A_BIRTH_DATE:
        return _("That cannot be a birth date. Please type your birth date, like 15-07-1985.")
    return _("I could not read that date. Please type it like 15-07-1985 or 15 Juli 1985.")
