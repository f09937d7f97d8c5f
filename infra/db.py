"""Database engine, session factory and migrations, built from Settings (never at import)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from infra.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
CONNECT_TIMEOUT = 10  # seconds to open a PostgreSQL connection


def create_engine(database_url: str, **kwargs: object) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys on and a busy timeout, others pre-ping."""
    # Bound parameters (names, birth dates) must never reach an error message or log.
    # SQLite keeps the driver's own transaction handling: reads run outside a
    # transaction and the first write begins one, so readers never block writers.
    # Its SAVEPOINTs are therefore unreliable, and no service uses them.
    kwargs.setdefault("hide_parameters", True)
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url,
            connect_args={"timeout": 30},
            **kwargs,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # After a database restart every pooled connection is dead: pre-ping finds out at
    # checkout and reconnects, so updates after the restart work without a failure.
    kwargs.setdefault("pool_pre_ping", True)
    if make_url(database_url).get_driver_name() == "asyncpg":
        # A database that does not answer fails the update in seconds, not a minute.
        kwargs.setdefault("connect_args", {"timeout": CONNECT_TIMEOUT})
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(database_url, **kwargs)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(database_url: str):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Run Alembic migrations up to `revision` (synchronously; call from a thread in async code)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


async def prepare_database(settings: Settings) -> None:
    """Migrate an embedded SQLite database by itself; servers are migrated by `db upgrade`."""
    if settings.is_sqlite:
        await asyncio.to_thread(upgrade_database, settings.database_url)


NUL = "\x00"


def storable(text: str) -> str:
    """`text` without NUL characters, everything else exactly as typed.

    PostgreSQL's text types cannot hold U+0000 (it refuses the whole statement), and
    nobody means to type one; a NUL in a query parameter would otherwise fail the update.
    """
    return text.replace(NUL, "")


def dialect_insert(bind: AsyncSession | AsyncConnection) -> Callable[[Table], Any]:
    """The `insert` construct with ON CONFLICT support for the database of `bind` (a
    session or a connection): PostgreSQL's or SQLite's."""
    dialect = bind.dialect if isinstance(bind, AsyncConnection) else bind.get_bind().dialect
    return pg_insert if dialect.name == "postgresql" else sqlite_insert
