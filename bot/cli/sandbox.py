"""`bansos-bot sandbox`: the whole bot on one laptop, offline, with no token.

A thin command: the sandbox itself (`sandbox/`: emulator, web chat, personas, demo
data) is development tooling outside the production image, imported only when the
command runs."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.cli import app
from bot.runtime import configure_logging

if TYPE_CHECKING:
    from sandbox.runner import Sandbox

# The sandbox's defaults, here so that the command's help needs no sandbox import.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_SANDBOX_DATABASE = "sqlite+aiosqlite:///./sandbox.db"


def _personas_table(sandbox: Sandbox) -> Table:
    table = Table(title="Personas (pick one in each pane)")
    table.add_column("persona")
    table.add_column("role")
    table.add_column("who")
    table.add_column("Telegram id", justify="right")
    for persona in sandbox.personas:
        table.add_row(persona.name, persona.role, persona.description_id, str(persona.telegram_id))
    return table


async def _serve(sandbox: Sandbox, console: Console) -> None:
    """Start, print where to look, wait for SIGINT/SIGTERM, stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await sandbox.start()
        try:
            console.print(_personas_table(sandbox))
            for problem in sandbox.setup_problems:
                console.print(f"[yellow]Persona setup skipped:[/yellow] {problem}")
            if sandbox.allow_remote and sandbox.host != DEFAULT_HOST:
                console.print(
                    f"[yellow]Listening on {sandbox.host}: anyone who can reach this "
                    "address can use and reset the sandbox.[/yellow]"
                )
            console.print(f"[green]Sandbox ready:[/green] open {sandbox.url}")
            console.print("Press Ctrl+C to stop.")
            console.file.flush()
            await stop.wait()
            console.print("Stopping the sandbox...")
        finally:
            await sandbox.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@app.command("sandbox")
def sandbox_command(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Web page port")] = DEFAULT_PORT,
    host: Annotated[str, typer.Option(help="Address to listen on")] = DEFAULT_HOST,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --host (the page has no login)"),
    ] = False,
    database: Annotated[
        str,
        typer.Option(
            "--database",
            envvar="SANDBOX_DATABASE_URL",
            help="The sandbox's own SQLite database (never the production one)",
        ),
    ] = DEFAULT_SANDBOX_DATABASE,
    families: Annotated[
        int, typer.Option(min=4, help="Demo families generated into an empty database")
    ] = 200,
    seed: Annotated[int, typer.Option(help="Demo random seed")] = 2024,
) -> None:
    """Try the bot offline: Bot API emulator + the real bot + a Telegram-like web page."""
    try:
        from sandbox.runner import RemoteBindError, Sandbox, SandboxError, check_bind_host
    except ImportError as error:  # the production image leaves sandbox/ out
        typer.echo("The sandbox is not installed here (it is development tooling).", err=True)
        raise typer.Exit(code=2) from error

    console = Console(highlight=False)
    try:
        check_bind_host(host, allow_remote)
        sandbox = Sandbox(
            host=host,
            port=port,
            database_url=database,
            allow_remote=allow_remote,
            families=families,
            seed=seed,
        )
    except RemoteBindError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(code=2) from error
    except SandboxError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(code=2) from error
    configure_logging(logging.WARNING)
    logging.getLogger("sandbox").setLevel(logging.INFO)
    console.print("Starting the sandbox (emulator, database, bot, web page)...")
    try:
        asyncio.run(_serve(sandbox, console))
    except SandboxError as error:
        console.print(f"[red]The sandbox could not start:[/red] {error}")
        raise typer.Exit(code=1) from error
    console.print("Sandbox stopped.")
