"""Commands that run the bot: run (long polling) and webhook."""

from __future__ import annotations

import asyncio

import typer

from bot.cli import app
from bot.runtime import NO_TOKEN_HELP, configure_logging, run_polling, run_webhook
from infra.settings import load_settings


@app.command()
def run() -> None:
    """Run the bot with long polling (migrates an embedded SQLite database first)."""
    settings = load_settings()
    if not settings.bot_token:
        typer.echo(NO_TOKEN_HELP, err=True)
        raise typer.Exit(code=2)
    configure_logging()
    asyncio.run(run_polling(settings))


@app.command()
def webhook() -> None:
    """Serve Telegram's webhook (WEBHOOK_URL, WEBHOOK_SECRET) with /healthz."""
    settings = load_settings()
    if not settings.bot_token:
        typer.echo(NO_TOKEN_HELP, err=True)
        raise typer.Exit(code=2)
    configure_logging()
    asyncio.run(run_webhook(settings))
