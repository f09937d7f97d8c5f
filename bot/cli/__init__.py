"""The Typer application; each module registers its own commands on `app`."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="bansos-bot",
    help="Telegram service bot for PKH, BPNT/Sembako and Napza referrals.",
    no_args_is_help=True,
    add_completion=False,
)

# Command modules register themselves on import.
from bot.cli import (  # noqa: E402,F401
    accounts,
    admin,
    broadcast,
    data,
    napza,
    operations,
    reports,
    revocation,
    runtime,
    sandbox,
)
