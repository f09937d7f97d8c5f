"""What an admin reads: statistics of the area, pending referrals, open disputes."""

from __future__ import annotations

from functools import partial
from html import escape

from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal

from models import EWarong, Redemption
from services.stats import Overview, PendingReferral
from tg import texts
from tg.formatting import local_datetime, money


def statistics(figures: Overview, locale: str) -> str:
    """Linked KPM by programme and region, today's redemptions, referrals, broadcasts."""
    number = partial(format_decimal, format="#,##0", locale=locale)
    area = escape(figures.area) if figures.area else _("the whole country")
    lines = [
        _("<b>Statistics for {area}</b>").format(area=area),
        _("Linked KPM families: {linked} (PKH {pkh}, BPNT {bpnt})").format(
            linked=number(figures.linked), pkh=number(figures.pkh), bpnt=number(figures.bpnt)
        ),
    ]
    lines += [
        f"• {escape(line.name)}: {number(line.linked)} "
        f"(PKH {number(line.pkh)}, BPNT {number(line.bpnt)})"
        for line in figures.regions
    ]
    lines.append(
        _("BPNT redemptions today: {count}, {amount}").format(
            count=number(figures.redemptions_today),
            amount=money(figures.redeemed_today, locale),
        )
    )
    lines.append(
        _("Open Napza referrals: {open} (overdue: {overdue})").format(
            open=number(figures.open_referrals), overdue=number(figures.overdue_referrals)
        )
    )
    if figures.broadcasts:
        lines.append(_("Broadcasts in progress:"))
        lines += [
            f"• #{broadcast.id} {texts.AUDIENCE_NAMES[broadcast.audience]}: "
            f"{texts.BROADCAST_STATUS_NAMES[broadcast.status]}"
            for broadcast in figures.broadcasts
        ]
    else:
        lines.append(_("No broadcasts in progress."))
    return "\n".join(lines)


def pending_referral(item: PendingReferral, locale: str) -> str:
    """One open Napza referral, without the requester or the note."""
    request = item.request
    text = _(
        "<b>{ticket}</b> — {status}\nHelp: {help}, {urgency}\nRegion: {region}\n"
        "Waiting since {since}"
    ).format(
        ticket=request.ticket, status=texts.REQUEST_STATUS_NAMES[request.status],
        help=texts.HELP_TYPE_NAMES[request.help_type],
        urgency=texts.URGENCY_NAMES[request.urgent], region=escape(item.region),
        since=local_datetime(request.created_at, locale, request.region_code),
    )  # fmt: skip
    if item.overdue:
        text += "\n" + _("The partner has not answered in time.")
    return text


def open_dispute(redemption: Redemption, ewarong: EWarong, locale: str) -> str:
    return _("Dispute on transaction #{id}: {amount} at {ewarong}, {when}.").format(
        id=redemption.id,
        amount=money(redemption.total, locale),
        ewarong=escape(ewarong.name),
        when=local_datetime(redemption.created_at, locale, ewarong.village_code),
    )
