"""The sandbox: the Bot API emulator, the real bot and the web chat, in one process.

``Sandbox`` starts, on one event loop:

1. the Bot API emulator (``sandbox.emulator``), always on loopback;
2. an SQLite database of its own (``./sandbox.db`` by default, never the production
   ``./bansos.db``): migrated, regions loaded, the demo registry generated when the
   registry is empty, and the personas' setup applied (``sandbox.personas``);
3. the real bot, built by ``bot.factory`` exactly as in production (same dispatcher,
   middlewares and handlers), long-polling the emulator;
4. the web chat (``sandbox.web``) on ``host:port``, loopback unless told otherwise.

``reset()`` puts everything back: demo registry, personas, empty chats, fresh
conversation state. Nothing runs in another process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiohttp import web
from sqlalchemy import delete, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.cli.sandbox import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SANDBOX_DATABASE
from bot.factory import create_bot, create_context, create_dispatcher
from bot.runtime import start_embedded_worker, stop_embedded_worker
from infra.db import create_engine, create_sessionmaker, upgrade_database
from infra.settings import DEFAULT_DATABASE_URL, Settings, load_settings
from models import Base, Beneficiary
from sandbox import demo
from sandbox.client import EmulatorClient
from sandbox.demo import DemoIdentity, generate_demo
from sandbox.emulator import BotApiEmulator
from sandbox.net import is_loopback
from sandbox.personas import (
    PERSONAS,
    PLACES,
    Persona,
    Place,
    admin_ids,
    persona_by_key,
    seed_personas,
)
from services.identity import Hasher
from services.regions import REGION_DATA_DIR, import_regions, region_count
from tg.context import AppContext, utc_now

if TYPE_CHECKING:
    from sandbox.web import WebChat

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "7000000001:sandbox-offline-demo-not-a-real-token"
SANDBOX_BOT_USERNAME = "bansos_sandbox_bot"
IDENTITIES_SHOWN = 8
# Reference data a reset keeps; every other table is emptied.
KEPT_TABLES = frozenset({"regions", "pkh_component_rates", "alembic_version"})
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 5.0


class SandboxError(RuntimeError):
    """The sandbox cannot start as asked (bad host, database or port)."""


class RemoteBindError(SandboxError):
    """Binding to a non-loopback address was asked without ``allow_remote``."""


def check_bind_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback host unless remote access was allowed explicitly."""
    if not allow_remote and not is_loopback(host):
        raise RemoteBindError(
            f"refusing to serve the sandbox on {host!r}: it has no login and anyone who can "
            "reach it can reset the demo. Use a loopback address (127.0.0.1, the default), "
            "or pass --allow-remote if you really mean it."
        )


def _http_url(host: str, port: int) -> str:
    """The URL to open for a server bound to ``host:port``."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _sqlite_file(database_url: str) -> Path:
    """The database file of an SQLite URL; anything else is refused."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise SandboxError("the sandbox uses an embedded SQLite database of its own")
    if not url.database or url.database == ":memory:":
        raise SandboxError("the sandbox database must be a file (sqlite+aiosqlite:///./x.db)")
    return Path(url.database).expanduser().resolve()


def _check_not_production(database_url: str) -> None:
    """Refuse the production database: a reset would wipe its registry."""
    path = _sqlite_file(database_url)
    production = {_sqlite_file(DEFAULT_DATABASE_URL)}
    configured = load_settings().database_url
    if make_url(configured).get_backend_name() == "sqlite":
        try:
            production.add(_sqlite_file(configured))
        except SandboxError:
            pass
    if path in production:
        raise SandboxError(
            f"{path} is the bot's production database; the sandbox resets its data. "
            f"Give it a database of its own (default {DEFAULT_SANDBOX_DATABASE})."
        )


class Sandbox:
    """Emulator + real bot + web chat, started and stopped together in this process.

    ``port=0`` (and ``emulator_port=0``) pick free ports; ``url`` and
    ``emulator_url`` tell which after ``start()``. Use as ``async with Sandbox(...)``
    or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        database_url: str = DEFAULT_SANDBOX_DATABASE,
        allow_remote: bool = False,
        families: int = 200,
        seed: int = 2024,
        personas: Sequence[Persona] = PERSONAS,
        places: Sequence[Place] = PLACES,
        secret_key: str | None = None,
        emulator_port: int = 0,
        settings_overrides: dict[str, Any] | None = None,
    ) -> None:
        check_bind_host(host, allow_remote)
        # e.g. {"throttle_burst": 1000} for scripts that act faster than a person
        self.settings_overrides = dict(settings_overrides or {})
        _check_not_production(database_url)
        self.host = host
        self.port = port
        self.database_url = database_url
        self.allow_remote = allow_remote
        self.families = families
        self.seed = seed
        self.personas: tuple[Persona, ...] = tuple(personas)
        self.places: tuple[Place, ...] = tuple(places)
        self.secret_key = secret_key
        self.emulator_port = emulator_port
        self.identities: list[DemoIdentity] = []
        self.setup_problems: list[str] = []
        self.emulator: BotApiEmulator | None = None
        self.control: EmulatorClient | None = None
        self.settings: Settings | None = None
        self.ctx: AppContext | None = None
        self.bot: Bot | None = None
        self.dp: Dispatcher | None = None
        self._polling: asyncio.Task[None] | None = None
        self._worker: tuple[asyncio.Task[None], asyncio.Event] | None = None
        # The sandbox's own clock: real time plus what the trainer fast-forwarded, so an
        # unanswered Napza request can be shown escalating when "the clock passes the SLA".
        self.clock_offset = timedelta(0)
        self._web: WebChat | None = None
        self._web_runner: web.AppRunner | None = None
        self._url: str | None = None
        self._reset_lock = asyncio.Lock()

    # ----------------------------------------------------------------- public API

    @property
    def url(self) -> str:
        """The web chat's URL (after ``start()``)."""
        if self._url is None:
            raise SandboxError("the sandbox is not running")
        return self._url

    @property
    def emulator_url(self) -> str:
        """The Bot API emulator's base URL (after ``start()``)."""
        if self.emulator is None or self.emulator.base_url is None:
            raise SandboxError("the sandbox is not running")
        return self.emulator.base_url

    @property
    def running(self) -> bool:
        return self._url is not None

    def persona(self, key: str) -> Persona | None:
        """The persona with this key, or None."""
        return persona_by_key(key, self.personas)

    async def start(self) -> None:
        """Start emulator, database, bot and web chat; on failure undo what started."""
        if self.emulator is not None:
            raise SandboxError("the sandbox is already running")
        try:
            self.emulator = BotApiEmulator(SANDBOX_TOKEN, SANDBOX_BOT_USERNAME)
            await self.emulator.start("127.0.0.1", self.emulator_port)
            self.control = EmulatorClient(self.emulator_url)
            self.settings = self._bot_settings()
            await self._prepare_database()
            await self._register_users()
            await self._start_bot()
            await self._start_web()
        except BaseException:
            await self.stop()
            raise
        log.info("sandbox running at %s (emulator %s)", self._url, self.emulator_url)

    async def stop(self) -> None:
        """Stop everything that runs (safe to call twice, or after a failed start)."""
        self._url = None
        if self._web is not None:
            self._web.close_streams()
        if self._web_runner is not None:
            await self._web_runner.cleanup()
            self._web_runner = None
        self._web = None
        await self._stop_bot()
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.emulator is not None:
            await self.emulator.stop()
            self.emulator = None

    async def reset(self) -> None:
        """Restore the demo: registry, personas, empty chats and fresh conversation state.

        The bot is rebuilt (new dispatcher, FSM storage and key-value store, so no
        conversation, lockout, throttle or de-duplication state survives) and keeps
        polling the same emulator.
        """
        if self.emulator is None or self.control is None:
            raise SandboxError("the sandbox is not running")
        async with self._reset_lock:
            await self._stop_bot()
            try:
                await self.control.reset()
                await self._wipe_database()
                await self._seed()
                await self._register_users()
            finally:
                await self._start_bot()  # the bot runs again even if the reset failed
        log.info("sandbox reset to the demo data")

    async def wait_handled(self, update_id: int, seconds: float = 10.0) -> None:
        """Wait until the bot fetched update ``update_id`` and finished what it was handling.

        Updates are handled as tasks (as in production), so the emulator's
        confirmation alone does not mean the replies were sent; scripts and tests
        acting as users wait with this.
        """
        if self.control is None:
            raise SandboxError("the sandbox is not running")
        await self.control.wait(update_id, seconds)
        busy = [task for task in getattr(self.dp, "_handle_update_tasks", ()) if not task.done()]
        if busy:
            await asyncio.wait(busy, timeout=seconds)

    async def idle(self) -> None:
        """Return once no reset is in progress (user actions wait for one to finish)."""
        async with self._reset_lock:
            pass

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- database

    def _bot_settings(self) -> Settings:
        """Production settings, except: the emulator, the sandbox database, no Redis."""
        values: dict[str, Any] = {
            "bot_token": SANDBOX_TOKEN,
            "telegram_api_url": self.emulator_url,
            "database_url": self.database_url,
            "admin_ids": admin_ids(self.personas),
            "redis_url": None,
        }
        if self.secret_key:
            values["secret_key"] = self.secret_key
        values.update(self.settings_overrides)
        return load_settings(_env_file=None, **values)

    def _hasher(self) -> Hasher:
        assert self.settings is not None
        return Hasher(self.settings.resolved_secret_key())

    def _database(self) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
        """A short-lived engine and session factory for setup work (dispose the engine)."""
        engine = create_engine(self.database_url)
        return engine, create_sessionmaker(engine)

    async def _prepare_database(self) -> None:
        """Migrate, load regions when missing, generate the demo when empty, seed personas."""
        path = _sqlite_file(self.database_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade_database, self.database_url)
        engine, sessionmaker = self._database()
        try:
            async with sessionmaker() as session:
                regions = await region_count(session)
                families = await session.scalar(select(func.count()).select_from(Beneficiary))
            if not regions:
                await import_regions(sessionmaker, REGION_DATA_DIR)
        finally:
            await engine.dispose()
        if families:
            self.identities = await self._existing_identities()
            await self._seed_personas()
        else:
            await self._seed()

    async def _seed(self) -> None:
        """Generate the demo registry and apply the personas' setup."""
        engine, sessionmaker = self._database()
        try:
            identities = await generate_demo(
                sessionmaker, self._hasher(), families=self.families, seed=self.seed
            )
        finally:
            await engine.dispose()
        self.identities = identities[:IDENTITIES_SHOWN]
        await self._seed_personas()

    async def _seed_personas(self) -> None:
        engine, sessionmaker = self._database()
        try:
            self.setup_problems = await seed_personas(sessionmaker, self._hasher(), self.personas)
        finally:
            await engine.dispose()

    async def _existing_identities(self) -> list[DemoIdentity]:
        """The first demo identities of this seed that are in the registry already.

        The demo is deterministic, so the families are drawn again (not written)
        and kept when their NIK is found.
        """
        hasher = self._hasher()
        engine, sessionmaker = self._database()
        try:
            async with sessionmaker() as session:
                villages, names = await demo._villages(session)
                drawn = demo.demo_families(self.seed, IDENTITIES_SHOWN, date.today(), villages)
                wanted = {hasher.nik(family.nik): family for family in drawn}
                found = set(
                    await session.scalars(
                        select(Beneficiary.nik_hash).where(Beneficiary.nik_hash.in_(wanted))
                    )
                )
        finally:
            await engine.dispose()
        present = [family for nik_hash, family in wanted.items() if nik_hash in found]
        engine, sessionmaker = self._database()
        try:  # the codes of a sandbox kept from an earlier run may have expired or been used
            await demo.ensure_activation_codes(
                sessionmaker, hasher, present, self.seed, datetime.now(UTC)
            )
        finally:
            await engine.dispose()
        return [demo.identity_of(family, names, self.seed) for family in present]

    async def _wipe_database(self) -> None:
        """Empty every table except the reference data (regions, PKH rates)."""
        engine, _ = self._database()
        try:
            async with engine.begin() as conn:
                existing = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
                for table in reversed(Base.metadata.sorted_tables):
                    if table.name in existing and table.name not in KEPT_TABLES:
                        await conn.execute(delete(table))
        finally:
            await engine.dispose()

    # ----------------------------------------------------------------- emulator users

    async def _register_users(self) -> None:
        """Create each persona as a Telegram user (with a private chat) in the emulator."""
        assert self.control is not None
        for persona in self.personas:
            await self.control.request("POST", "/users", json=persona.user_spec())

    # ----------------------------------------------------------------- the bot

    async def _start_bot(self) -> None:
        """Build the bot like production and start long polling the emulator."""
        assert self.settings is not None
        self.ctx = await create_context(self.settings)
        self.ctx.clock = self.now
        self.bot = create_bot(self.settings)
        self.dp = create_dispatcher(self.ctx)
        self._worker = start_embedded_worker(self.ctx, self.bot, self.dp)
        started = asyncio.Event()

        async def _started() -> None:
            started.set()

        self.dp.startup.register(_started)
        self._polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot,
                handle_signals=False,
                handle_as_tasks=True,
                close_bot_session=False,
                polling_timeout=10,
            )
        )
        waiter = asyncio.create_task(started.wait())
        done, _ = await asyncio.wait(
            {self._polling, waiter}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._polling in done:
                self._polling.result()  # raises why polling ended
            raise SandboxError("the bot did not start polling the emulator")

    def now(self) -> datetime:
        """The sandbox's time (see `advance_clock`)."""
        return utc_now() + self.clock_offset

    async def advance_clock(self, minutes: int) -> datetime:
        """Fast-forward the sandbox's clock and run the worker's checks at the new time."""
        from bot.worker import make_notify, worker_tick

        self.clock_offset += timedelta(minutes=minutes)
        if self.ctx is not None and self.bot is not None and self.dp is not None:
            notify = make_notify(self.bot, self.dp.workflow_data["i18n"], self.ctx.sessionmaker)
            for delivery in await worker_tick(self.ctx, self.now()):
                await notify(delivery)
        return self.now()

    async def _stop_bot(self) -> None:
        """Stop polling, let updates in progress finish, close the session and the context."""
        if self._worker is not None:
            await stop_embedded_worker(*self._worker)
            self._worker = None
        polling, self._polling = self._polling, None
        dp, self.dp = self.dp, None
        if polling is not None and dp is not None:
            if not polling.done():
                try:
                    await dp.stop_polling()
                except RuntimeError:  # polling had not started yet
                    polling.cancel()
            await asyncio.gather(polling, return_exceptions=True)
            in_flight = list(getattr(dp, "_handle_update_tasks", ()))
            if in_flight:
                _, late = await asyncio.wait(in_flight, timeout=DRAIN_TIMEOUT)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        if self.bot is not None:
            await self.bot.session.close()
            self.bot = None
        if self.ctx is not None:
            await self.ctx.close()
            self.ctx = None

    # ----------------------------------------------------------------- the web chat

    async def _start_web(self) -> None:
        from sandbox.web import WebChat

        self._web = WebChat(self)
        self._web_runner = web.AppRunner(
            self._web.app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._web_runner.setup()
        try:
            await web.TCPSite(self._web_runner, self.host, self.port).start()
        except OSError as error:
            raise SandboxError(
                f"cannot listen on {self.host}:{self.port}: {error.strerror or error}"
            ) from error
        bound = self._web_runner.addresses[0]
        self._url = _http_url(self.host, bound[1])
