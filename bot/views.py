"""Message texts built from service results, in the current locale (HTML parse mode).

Everything interpolated from data is HTML-escaped here.
"""

from __future__ import annotations

import re
from html import escape

from aiogram.utils.i18n import gettext as _

from bot import texts
from bot.formatting import local_datetime, long_date, money, month_name
from bot.services.identity import mask_name, mask_nik
from bot.services.status import AidStatus, BpntStatus, PkhStatus, StageLine
from models import Beneficiary, LedgerEntry

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


def help_text() -> str:
    return _(
        "<b>Menu</b>\n"
        "• <b>{link}</b>: connect this Telegram account to your family's KPM data. "
        "You share your phone number with the button, then type your NIK and birth date.\n"
        "• <b>{status}</b>: your PKH components, each stage (tahap) this year, and your "
        "BPNT/Sembako month, balance and last transactions.\n"
        "• <b>{erase}</b>: unlink this account and delete what the bot keeps about you. "
        "The ministry's registry is not changed.\n"
        "• <b>{language}</b>: Bahasa Indonesia or English.\n\n"
        "<b>Commands</b>\n"
        "/start: main menu\n/bantuan or /help: this help\n"
        "/bahasa or /settings: language\n/batal or /cancel: stop what you are doing"
    ).format(
        link=escape(str(texts.BTN_LINK)),
        status=escape(str(texts.BTN_STATUS)),
        erase=escape(str(texts.BTN_ERASE)),
        language=escape(str(texts.BTN_LANGUAGE)),
    )


def _status_name(status: str | None) -> str:
    return str(texts.STATUS_NAMES[status]) if status else _("not announced yet")


def _stage_line(line: StageLine, locale: str) -> str:
    label = _("Stage {number}").format(number=line.stage[1:])
    parts = [f"{label}: {_status_name(line.status)}"]
    if line.amount is not None:
        parts.append(money(line.amount, locale))
    text = " — ".join(parts)
    if line.date is not None and line.status == "disalurkan":
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
