"""Money, dates and times for users, in their locale and regional time zone (Babel)."""

from __future__ import annotations

from datetime import date, datetime

from babel.dates import format_date as babel_format_date
from babel.dates import format_skeleton
from babel.numbers import format_decimal

from services.regions import timezone_for, zone_abbreviation


def money(amount: int, locale: str) -> str:
    """Rupiah with the locale's grouping: `Rp200.000` (id), `Rp200,000` (en)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp{format_decimal(abs(amount), format='#,##0', locale=locale)}"


def kilometres(value: float, locale: str, *, always_decimal: bool = True) -> str:
    """A distance with one decimal in the locale's digits: `0,3` (id), `0.3` (en); a
    round number without it when `always_decimal` is off (`25`)."""
    return format_decimal(value, format="#,##0.0" if always_decimal else "#,##0.#", locale=locale)


def long_date(value: date, locale: str) -> str:
    """`15 Juli 1985` (id), `July 15, 1985` (en)."""
    return babel_format_date(value, format="long", locale=locale)


def local_datetime(value: datetime, locale: str, region_code: str | None) -> str:
    """A moment in the user's regional zone: `1 Mei 2025 11.04 WITA`."""
    zone = timezone_for(region_code)
    day = format_skeleton("yMMMd", value, tzinfo=zone, locale=locale)
    clock = format_skeleton("Hm", value, tzinfo=zone, locale=locale)
    return f"{day} {clock} {zone_abbreviation(region_code)}"


def month_name(period: str, locale: str) -> str:
    """`2026-05` -> `Mei 2026` (id), `May 2026` (en)."""
    year, month = (int(part) for part in period.split("-")[:2])
    return babel_format_date(date(year, month, 1), format="MMMM y", locale=locale)
