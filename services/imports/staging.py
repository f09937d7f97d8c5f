"""The streamed imports' machinery: temporary stage tables filled by COPY, the batch
pipeline, and the one transaction an import runs in.

A file is read as a stream, in batches of `STAGE_BATCH` rows, so memory stays bounded
whatever its length. A worker thread reads and checks batch k+1 (the rules of one
row, keyed hashing) while the database stores batch k: checks against the registry,
then COPY (PostgreSQL; batched INSERTs on SQLite) into temporary tables and
set-based upserts into the real ones. Every row's keys are staged too, so the checks
across the whole file run in SQL at the end. Everything happens in one transaction:
when any row is wrong the transaction is rolled back, so nothing is written.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement

from models.base import UtcDateTime
from services.imports.csvfile import BoundedErrors, ImportReport, Progress, Row

log = logging.getLogger(__name__)

STAGE_BATCH = 20_000  # rows read, checked and staged at a time (bounds the memory)

# What the write phase does with a staged row.
SAME, INSERT, UPDATE = 0, 1, 2

STAGE_METADATA = MetaData()
HashText = String().with_variant(String(collation="C"), "postgresql")


def stage_table(name: str, *columns: Column[Any]) -> Table:
    """A temporary table (dropped at commit on PostgreSQL), created by `Stager`."""
    return Table(
        name, STAGE_METADATA, *columns, prefixes=["TEMPORARY"], postgresql_on_commit="DROP"
    )


class Stager:
    """Temporary tables on the import's connection, filled by COPY on PostgreSQL."""

    def __init__(self, connection: AsyncConnection, tables: Sequence[Table]) -> None:
        self.connection = connection
        self.tables = tables
        self.postgres = connection.dialect.name == "postgresql"
        self.driver: Any = None

    async def __aenter__(self) -> Stager:
        def create(sync: Any) -> None:
            for table in self.tables:
                table.drop(sync, checkfirst=True)  # SQLite: left by an earlier import
                table.create(sync)

        await self.connection.run_sync(create)
        if self.postgres:
            self.driver = (await self.connection.get_raw_connection()).driver_connection
            assert self.driver.is_in_transaction(), "COPY must run inside the import transaction"
            await self.connection.execute(text("SET LOCAL work_mem = '256MB'"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.postgres and not self.connection.closed:  # PostgreSQL drops them on commit
            await self.connection.run_sync(
                lambda sync: [table.drop(sync, checkfirst=True) for table in self.tables]
            )

    async def load(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append rows (tuples in the table's column order)."""
        if not rows:
            return
        if self.postgres:
            await self.driver.copy_records_to_table(
                table.name, records=rows, columns=[column.name for column in table.columns]
            )
        else:  # plain executemany; dates as SQLAlchemy stores them on SQLite (ISO text)
            names = [column.name for column in table.columns]
            dates = [i for i, column in enumerate(table.columns) if isinstance(column.type, Date)]
            if dates:
                rows = [list(row) for row in rows]
                for row in rows:
                    for i in dates:
                        if row[i] is not None:
                            row[i] = row[i].isoformat()
            marks = ", ".join("?" * len(names))
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            await self.connection.exec_driver_sql(sql, [tuple(row) for row in rows])

    async def clear(self, *tables: Table) -> None:
        """Empty per-batch tables."""
        if self.postgres:
            await self.connection.execute(text(f"TRUNCATE {', '.join(t.name for t in tables)}"))
        else:
            for table in tables:
                await self.connection.execute(delete(table))


def batched(rows: Iterable[Row], size: int | None = None) -> Iterator[list[Row]]:
    """Consecutive lists of at most `size` (default STAGE_BATCH) rows, pulled lazily."""
    iterator, size = iter(rows), size or STAGE_BATCH
    while batch := list(itertools.islice(iterator, size)):
        yield batch


async def pipeline(
    rows: Iterable[Row],
    check: Callable[[list[Row]], Any],
    store: Callable[[Any], Awaitable[None]],
    progress: Progress | None,
    total: int,
) -> None:
    """Read and check batch k+1 in a thread while the database stores batch k.

    Reading and checking is Python work; storing mostly waits for the database, which
    meanwhile runs on another core. Only `store` touches the database."""
    batches = batched(rows)

    def next_checked() -> tuple[int, Any] | None:
        batch = next(batches, None)
        return None if batch is None else (len(batch), check(batch))

    pending = asyncio.ensure_future(asyncio.to_thread(next_checked))
    done = 0
    try:
        while (item := await pending) is not None:
            pending = asyncio.ensure_future(asyncio.to_thread(next_checked))
            size, checked = item
            await store(checked)
            done += size
            if progress:
                progress(done, max(total, done))
    finally:
        if not pending.done():  # never leave the thread reading the file on its own
            with suppress(Exception):
                await pending


def among(connection: AsyncConnection, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN values`: one array parameter on PostgreSQL, a list elsewhere."""
    if connection.dialect.name == "postgresql":
        array = postgresql.ARRAY(BigInteger if isinstance(values[0], int) else String)
        return column == any_(bindparam(None, value=list(values), type_=array))
    return column.in_(values)


def repeats(keys: Iterable[Any]) -> bool:
    """Whether a key occurs twice (within one batch)."""
    seen: set[Any] = set()
    for key in keys:
        if key in seen:
            return True
        seen.add(key)
    return False


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Log how long a phase of an import took (DEBUG; no row data)."""
    started = time.perf_counter()
    yield
    log.debug("%s: %.2fs", name, time.perf_counter() - started)


def utc_literal(now: Any) -> Any:
    """`now` as a SQL literal of the columns' UTC type."""
    return literal(now, UtcDateTime())


async def run_streamed(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[AsyncSession, AsyncConnection, ImportReport], Awaitable[None]],
    errors: BoundedErrors,
) -> ImportReport:
    """Run `work` in one transaction; commit only when no problem was found.

    Batches are written as they come, so that the database works while the next
    batch is checked; a problem found later rolls all of them back."""
    report = ImportReport()
    async with sessionmaker() as session:
        connection = await session.connection()
        await work(session, connection, report)
        if errors:
            await session.rollback()
            return errors.into(ImportReport())
        await session.commit()
    return report


async def count_repeats(
    connection: AsyncConnection, repeated: Any, errors: BoundedErrors, found: int
) -> None:
    """Count (without fetching) the repeated rows beyond the ones reported."""
    if found < errors.limit:
        return
    rest = await connection.scalar(select(func.count()).select_from(repeated.subquery())) or 0
    errors.count += rest - found
