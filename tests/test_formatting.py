"""Money, dates and regional times, through Babel."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tg.formatting import local_datetime, long_date, money


@pytest.mark.parametrize(
    ("amount", "locale", "text"),
    [
        (200000, "id", "Rp200.000"),
        (1800000, "id", "Rp1.800.000"),
        (200000, "en", "Rp200,000"),
        (0, "id", "Rp0"),
        (-200000, "id", "-Rp200.000"),
    ],
)
def test_money(amount: int, locale: str, text: str) -> None:
    assert money(amount, locale) == text


def test_long_dates() -> None:
    assert long_date(date(1985, 7, 15), "id") == "15 Juli 1985"
    assert long_date(date(1985, 7, 15), "en") == "July 15, 1985"


@pytest.mark.parametrize(
    ("region", "clock", "zone"),
    [
        ("32.04.10.2001", "10.00", "WIB"),  # Jawa Barat
        ("51.71.01.1001", "11.00", "WITA"),  # Bali
        ("73.71", "11.00", "WITA"),  # Sulawesi Selatan
        ("91.01", "12.00", "WIT"),  # Papua
        (None, "10.00", "WIB"),
    ],
)
def test_times_in_the_regional_zone(region: str | None, clock: str, zone: str) -> None:
    moment = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    text = local_datetime(moment, "id", region)
    assert clock in text and text.endswith(zone)
