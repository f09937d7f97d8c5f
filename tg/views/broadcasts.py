"""What an admin reads about a broadcast: its progress message."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiogram.utils.i18n import gettext as _
from babel.dates import format_timedelta
from babel.numbers import format_decimal

from models import Broadcast
from models.enums import BroadcastStatus
from services.broadcasts.store import Progress
from tg import texts
from tg.formatting import local_datetime


def _number(value: float, locale: str) -> str:
    return format_decimal(value, format="#,##0", locale=locale)


def _duration(seconds: float, locale: str) -> str:
    """A duration as people say it, in the locale: "2 menit", "1 jam" (never "0:00:00")."""
    return format_timedelta(timedelta(seconds=max(1.0, seconds)), locale=locale, threshold=1.0)


def progress_text(
    broadcast: Broadcast, progress: Progress, locale: str, zone_region: str | None, now: datetime
) -> str:
    """The admin's progress message: status, counts, rate and time left (or the report)."""
    number = lambda value: _number(value, locale)  # noqa: E731
    lines = [
        _("<b>Broadcast #{id}</b> to {audience}: {status}").format(
            id=broadcast.id,
            audience=texts.AUDIENCE_NAMES[broadcast.audience],
            status=texts.BROADCAST_STATUS_NAMES[progress.status],
        )
    ]
    if progress.status == BroadcastStatus.SCHEDULED:
        lines.append(
            _("Starts at {when}.").format(
                when=local_datetime(progress.scheduled_at, locale, zone_region)
            )
        )
    lines.append(
        _("Recipients: {count}").format(count=number(progress.recipients))
        + (f" · {broadcast.region_prefix}" if broadcast.region_prefix else "")
    )
    lines.append(
        _("Sent: {sent} · failed: {failed} · blocked the bot: {blocked}").format(
            sent=number(progress.sent),
            failed=number(progress.failed),
            blocked=number(progress.blocked),
        )
    )
    if progress.status in (BroadcastStatus.RUNNING, BroadcastStatus.PAUSED):
        left = progress.seconds_left(now)
        lines.append(
            _("Rate: {rate} per second · time left: {left}").format(
                rate=number(progress.rate(now)),
                left=_duration(left, locale) if left is not None else "–",
            )
        )
    if (
        progress.status in (BroadcastStatus.DONE, BroadcastStatus.CANCELLED)
        and progress.started_at is not None
    ):
        end = progress.finished_at or now
        lines.append(
            _("Took {duration}.").format(
                duration=_duration((end - progress.started_at).total_seconds(), locale)
            )
        )
    return "\n".join(lines)


def final_report(broadcast: Broadcast, progress: Progress, locale: str) -> str:
    """The one message that follows the progress message when delivery ends."""
    return _("Broadcast #{id} finished: {sent} of {recipients} delivered.").format(
        id=broadcast.id,
        sent=_number(progress.sent, locale),
        recipients=_number(progress.recipients, locale),
    )
