"""The small imports (e-Warongs, partners): the file is read whole (`csvfile.read_csv`),
every row validated, then written in batches of `BATCH_SIZE` in one transaction, or
nothing is written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.imports.csvfile import ImportReport, Progress, RowError

BATCH_SIZE = 1000  # rows per statement


def chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> list[Sequence[Any]]:
    """`items` split into consecutive slices of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


async def validate_then_write(
    sessionmaker: async_sessionmaker[AsyncSession],
    validate: Callable[[AsyncSession], Awaitable[tuple[list[Any], list[RowError]]]],
    write_batch: Callable[[AsyncSession, Any, ImportReport], Awaitable[None]],
    read_errors: Sequence[RowError],
    progress: Progress | None,
) -> ImportReport:
    """Validate every row, then write them in batches in one transaction, or write nothing."""
    async with sessionmaker() as session, session.begin():
        valid, errors = await validate(session)
        report = ImportReport(errors=sorted([*read_errors, *errors], key=lambda e: e.line))
        if not report.ok:
            return report
        done = 0
        for batch in chunks(valid):
            await write_batch(session, batch, report)
            done += len(batch)
            if progress:
                progress(done, len(valid))
    return report
