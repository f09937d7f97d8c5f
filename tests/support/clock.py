"""The suite's instant and the clock a test moves by hand.

`NOW` is 03:00 UTC (10:00 WIB) on 20 May 2026, after every disbursement of the test
registry (tests/support/registry.py). Tests that need a fixed instant use it and write
other times relative to it (`NOW + timedelta(...)`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 5, 20, 3, 0, tzinfo=UTC)


class Clock:
    """A callable clock that stands still at `now` until the test sets another instant."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def install_clock(app: Any, now: datetime = NOW) -> Clock:
    """Put a bot (conftest's `Harness`) on a new `Clock`, kept as `app.clock` for the test."""
    app.clock = Clock(now)
    app.ctx.clock = app.clock
    return app.clock
