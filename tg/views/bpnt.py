"""BPNT shopping texts: the family at the counter, the basket, the summary, the receipt,
the agent's day (HTML parse mode, in the current locale).

Everything interpolated from data is HTML-escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from aiogram.utils.i18n import gettext as _

from services.bpnt.ewarongs import NearbyEWarong
from services.bpnt.redemptions import TOTAL_ONLY, BasketLine, Receipt, basket_total
from services.bpnt.reports import DayReport
from tg import texts
from tg.formatting import kilometres, local_datetime, long_date, money


def basket_lines(lines: Sequence[BasketLine], locale: str) -> list[str]:
    """One line per item: "• Beras 2 × Rp12.000 = Rp24.000"; a total typed without items
    is just its amount ("• Belanja (total): Rp25.000"), not "1 × Rp25.000"."""
    return [
        f"• {escape(str(texts.FOOD_NAMES.get(line.item, line.item)))}: "
        f"{money(line.subtotal, locale)}"
        if line.item == TOTAL_ONLY
        else f"• {escape(str(texts.FOOD_NAMES.get(line.item, line.item)))} "
        f"{line.quantity} × {money(line.unit_price, locale)} = {money(line.subtotal, locale)}"
        for line in lines
    ]


def family_at_counter(masked: str, balance: int, attested: bool, locale: str) -> str:
    text = _("KPM: <b>{name}</b>\nAvailable balance: <b>{balance}</b>").format(
        name=escape(masked), balance=money(balance, locale)
    )
    if attested:
        text += "\n" + _(
            "Identified by KKS number: this transaction is recorded as attested by you, the agent."
        )
    return text


def basket(masked: str, balance: int, lines: Sequence[BasketLine], locale: str) -> str:
    parts = [
        _("KPM: <b>{name}</b> — balance {balance}").format(
            name=escape(masked), balance=money(balance, locale)
        )
    ]
    if lines:
        parts += basket_lines(lines, locale)
        parts.append(_("Total: <b>{amount}</b>").format(amount=money(basket_total(lines), locale)))
    parts.append(_("Pick a food item, or press Done."))
    return "\n".join(parts)


def redemption_summary(
    ewarong: str, masked: str, balance: int, lines: Sequence[BasketLine], locale: str
) -> str:
    total = basket_total(lines)
    return "\n".join(
        [
            _("<b>Check before confirming</b>"),
            _("e-Warong: {name}").format(name=escape(ewarong)),
            _("KPM: {name}").format(name=escape(masked)),
            *basket_lines(lines, locale),
            _("Total: <b>{amount}</b>").format(amount=money(total, locale)),
            _("Balance after: {amount}").format(amount=money(balance - total, locale)),
        ]
    )


def receipt(r: Receipt, masked: str, locale: str) -> str:
    lines = [redemption_line(dict(item)) for item in r.redemption.items]
    return "\n".join(
        [
            _("<b>Receipt #{id}</b>").format(id=r.redemption.id),
            _("e-Warong: {name}").format(name=escape(r.ewarong.name)),
            _("KPM: {name}").format(name=escape(masked)),
            *basket_lines(lines, locale),
            _("Total: <b>{amount}</b>").format(amount=money(r.redemption.total, locale)),
            _("Remaining balance: {amount}").format(
                amount=money(r.redemption.balance_after, locale)
            ),
            _("Time: {when}").format(
                when=local_datetime(r.redemption.created_at, locale, r.region_code)
            ),
        ]
    )


def redemption_line(item: dict[str, Any]) -> BasketLine:
    return BasketLine(str(item["item"]), int(item["quantity"]), int(item["unit_price"]))


def day_report(report: DayReport, locale: str) -> str:
    title = _("<b>Transactions on {day}</b> — {name}").format(
        day=long_date(report.day, locale), name=escape(report.ewarong.name)
    )
    if not report.redemptions:
        return title + "\n" + _("No transactions yet today.")
    rows = []
    for r in report.redemptions:
        when = local_datetime(r.created_at, locale, report.ewarong.village_code).split()[-2]
        flag = ""
        if r.reversed_at:
            flag = " " + _("(reversed)")
        elif r.disputed_at:
            flag = " " + _("(disputed)")
        rows.append(f"#{r.id} {when} — {money(r.total, locale)}{flag}")
    rows.append(
        _("{count} transactions, total {amount}").format(
            count=len(report.redemptions), amount=money(report.total, locale)
        )
    )
    return title + "\n" + "\n".join(rows)


def nearby(found: Sequence[NearbyEWarong], locale: str) -> str:
    """The nearest e-Warongs, closest first, with their distance and address."""
    lines = [_("<b>Nearest e-Warongs</b>")]
    lines += [
        _("• {name} — {km} km\n  {address}").format(
            name=escape(place.name),
            km=kilometres(place.distance_km, locale),
            address=escape(place.address),
        )
        for place in found
    ]
    return "\n".join(lines)


def no_ewarong_nearby(radius_km: float, locale: str) -> str:
    return _(
        "There is no active e-Warong within {km} km of you. Please ask at your village "
        "office (kantor desa or kelurahan) where to shop."
    ).format(km=kilometres(radius_km, locale, always_decimal=False))


QUESTION_MARK = "\n\n❓ "  # where the question asked under a receipt begins


def dispute_question(receipt_html: str) -> str:
    """The receipt, asking under it whether to report it (nothing is frozen yet)."""
    return (
        without_dispute_question(receipt_html)
        + QUESTION_MARK
        + _(
            "<b>Report this transaction?</b> Your family's shopping codes are frozen until "
            "an admin has checked it."
        )
    )


def without_dispute_question(receipt_html: str) -> str:
    return receipt_html.split(QUESTION_MARK, 1)[0]
