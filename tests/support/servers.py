"""Private, real PostgreSQL and Redis servers that fault tests may stop, kill and restart.

The shared services other tests use (CI's PostgreSQL on 5432, Redis on 6379) are
never touched: fault tests start their own `redis-server` and their own PostgreSQL
cluster (`initdb` + `pg_ctl`, the same binaries CI runs; as the `postgres` user when
run as root) on a free port, in a temporary folder, and break those. Where the
binaries are missing the tests fail under CI (`REQUIRE_SERVICES=1`) and skip
elsewhere. Also here: `polling_bot`, conftest's `bot_app` for any settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infra.db import create_engine, create_sessionmaker, upgrade_database
from infra.settings import Settings
from services.regions import REGION_DATA_DIR, import_regions
from tests.conftest import BOT_TOKEN, TEST_SECRET, Harness

REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
# The regions the test families and e-Warongs live in (the whole list takes seconds).
REGION_PREFIXES = ("32.04", "32.73", "51.71")


def require_binary(path: str | Path) -> str:
    """The binary's path; a CI failure (or a local skip) when it is missing."""
    found = shutil.which(str(path))
    if found is None:
        message = f"{path} is not installed: fault tests need a real server binary"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, seconds: float, *, open_: bool = True) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            is_open = probe.connect_ex(("127.0.0.1", port)) == 0
        if is_open == open_:
            return
        time.sleep(0.02)
    raise TimeoutError(f"port {port} did not {'open' if open_ else 'close'} in {seconds}s")


class RedisServer:
    """A `redis-server` child process without persistence (a restart forgets everything)."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = require_binary("redis-server")
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bansos-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait_for_port(self.port, 10)

    def stop(self) -> None:
        """Kill the server (SIGKILL, as a crash would); its data is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        _wait_for_port(self.port, 10, open_=False)

    def freeze(self) -> None:
        """Stop the server answering (SIGSTOP): connections hang instead of failing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.thaw()
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PostgresCluster:
    """A throw-away PostgreSQL cluster run by `pg_ctl` as the `postgres` user (when root)."""

    def __init__(self, port: int | None = None) -> None:
        self.initdb = require_binary(PG_BIN / "initdb")
        self.pg_ctl = require_binary(PG_BIN / "pg_ctl")
        self.port = port or free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="bansos-pg-"))
        self.data = self.folder / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")

    def init(self) -> None:
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-N",
            "-E", "UTF8", "--locale=C",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-F -p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = str(self.folder / "postgres.log")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends sessions cleanly; `immediate` is a crash (recovery on next start)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _region_subset(folder: Path) -> Path:
    """The region files cut down to the provinces and the test families' regencies."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("provinces.csv", "regencies.csv", "districts.csv", "villages.csv"):
        lines = (REGION_DATA_DIR / name).read_text(encoding="utf-8").splitlines()
        kept = [lines[0]] + [
            line
            for line in lines[1:]
            if name == "provinces.csv"
            or line.startswith(tuple(p + "." for p in REGION_PREFIXES))
            or line.split(",")[0] in REGION_PREFIXES
        ]
        (folder / name).write_text("\n".join(kept) + "\n", encoding="utf-8")
    return folder


async def migrate(url: str) -> None:
    """Schema (Alembic) and the regions the tests need, into an empty database."""
    await asyncio.to_thread(upgrade_database, url)
    engine = create_engine(url)
    with tempfile.TemporaryDirectory() as folder:
        await import_regions(create_sessionmaker(engine), _region_subset(Path(folder)))
    await engine.dispose()


def settings_for(database_url: str, redis_url: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=TEST_SECRET,
        bot_token=BOT_TOKEN,
        throttle_burst=10_000,
    )


@contextlib.asynccontextmanager
async def polling_bot(settings: Settings) -> AsyncIterator[Harness]:
    """The real bot polling a fresh emulator (as conftest's `bot_app`, for any settings)."""
    from bot.factory import create_bot, create_context, create_dispatcher
    from sandbox.client import EmulatorClient
    from sandbox.emulator import BotApiEmulator

    emulator = BotApiEmulator(token=BOT_TOKEN)
    settings.telegram_api_url = await emulator.start()
    ctx = await create_context(settings)
    bot = create_bot(settings)
    dp = create_dispatcher(ctx)
    started = asyncio.Event()

    async def _started() -> None:
        started.set()

    dp.startup.register(_started)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_as_tasks=False, handle_signals=False, polling_timeout=1)
    )
    await asyncio.wait_for(started.wait(), 10)
    client = EmulatorClient(settings.telegram_api_url, wait_timeout=20)
    harness = Harness(ctx, bot, dp, client, emulator)
    harness.polling = polling
    try:
        yield harness
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
        await client.close()
        await bot.session.close()
        await ctx.close()
        await emulator.stop()
