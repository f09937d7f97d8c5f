"""Commands that run the bot: run (long polling), webhook, and worker (broadcast delivery,
Napza SLA escalation and purge, outbox notices)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import typer

from bot.cli import app
from bot.runtime import NO_TOKEN_HELP, configure_logging, run_polling, run_webhook
from infra.settings import Settings, load_settings


def _serve(main: Callable[[Settings], Awaitable[None]]) -> None:
    """Run `main` with the settings, once a bot token is known (else exit 2, saying how)."""
    settings = load_settings()
    if not settings.bot_token:
        typer.echo(NO_TOKEN_HELP, err=True)
        raise typer.Exit(code=2)
    configure_logging()
    asyncio.run(main(settings))


@app.command()
def run() -> None:
    """Run the bot with long polling (migrates an embedded SQLite database first)."""
    _serve(run_polling)


@app.command()
def webhook() -> None:
    """Serve Telegram's webhook (WEBHOOK_URL, WEBHOOK_SECRET) with /healthz."""
    _serve(run_webhook)


async def _run_worker(settings: Settings) -> None:
    from bot.worker import run_worker_process

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in ("SIGINT", "SIGTERM"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
                pass
    await run_worker_process(settings, stop)


@app.command("worker")
def worker_command() -> None:
    """Run the background worker: broadcast delivery, Napza SLA escalation and purge."""
    _serve(_run_worker)
