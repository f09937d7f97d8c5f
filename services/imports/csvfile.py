"""Reading the ministry's CSV files, and the reports of what an import did.

Every importer reads through `csv_rows`, so a malformed file (wrong header, wrong
field count, NUL bytes, text that is not UTF-8, a quote never closed) is a row error
with its line, never an exception. Big files are streamed (`stream_csv`); the small
ones (e-Warongs, partners) are read whole (`read_csv`).

Personal data (NIK, phone, KKS number) never appears in a report or a log: error
reasons name the column and the rule, never the value.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.db import NUL

Progress = Callable[[int, int], None]

MAX_ERRORS = 1000  # errors kept in a report (the earliest lines); the rest are counted


@dataclass(frozen=True)
class RowError:
    """One problem in an input file: the line (1 = header), the column, and why."""

    line: int
    column: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did, or the problems that stopped it."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    omitted_errors: int = 0  # problems found beyond the `errors` kept in the report

    @property
    def ok(self) -> bool:
        """True when the file had no errors (and was therefore imported)."""
        return not self.errors

    @property
    def total(self) -> int:
        """Rows imported (inserted + updated + unchanged)."""
        return self.inserted + self.updated + self.unchanged

    @property
    def error_count(self) -> int:
        """All problems found, including those left out of `errors`."""
        return len(self.errors) + self.omitted_errors


Record = tuple[int, dict[str, str]]  # (line number, column -> raw text)
Row = tuple[int, list[str]]  # (line number, fields in the order of the columns)


class ErrorList(list[RowError]):
    """Collects row errors while validating."""

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record one problem."""
        self.append(RowError(line, column, reason))


class BoundedErrors:
    """Row errors of a streamed import: keeps the first `limit` by position, counts all."""

    def __init__(self, columns: Sequence[str], limit: int | None = None) -> None:
        self.rank = {name: index for index, name in enumerate(columns)}
        self.limit = limit or MAX_ERRORS
        self.items: list[RowError] = []
        self.count = 0
        self.fatal = False
        self.lock = threading.Lock()  # rows are checked in a worker thread

    def __bool__(self) -> bool:
        return self.count > 0

    def _key(self, error: RowError) -> tuple[int, int]:
        return (error.line, self.rank.get(error.column or "", -1))

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record one problem (ignored once the file could not be read at all)."""
        with self.lock:
            if self.fatal:
                return
            self.count += 1
            self.items.append(RowError(line, column, reason))
            if len(self.items) >= 2 * self.limit:
                self._trim()

    def discard(self, line: int, column: str, reason: str) -> None:
        """Forget a problem recorded earlier (when a later check explains the row better)."""
        error = RowError(line, column, reason)
        with self.lock:
            if error in self.items:
                self.items.remove(error)
                self.count -= 1

    def stop(self, line: int, reason: str) -> None:
        """The file cannot be read on: this problem alone is reported."""
        with self.lock:
            self.items, self.count, self.fatal = [RowError(line, None, reason)], 1, True

    def _trim(self) -> None:
        self.items.sort(key=self._key)
        del self.items[self.limit :]

    def into(self, report: ImportReport) -> ImportReport:
        """Put the kept errors (sorted by line, then column) and the count into `report`."""
        with self.lock:
            self._trim()
        report.errors = list(self.items)
        report.omitted_errors = self.count - len(self.items)
        return report


# --- reading -----------------------------------------------------------------------


def parse_csv_text(text: str, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a CSV text whose header must be exactly `columns`, with their line numbers."""
    errors = BoundedErrors(columns, limit=10**9)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    rows = list(csv_rows(reader, columns, errors, nul=NUL in text))
    return [(line, dict(zip(columns, fields, strict=True))) for line, fields in rows], errors.items


def read_csv(path: Path, columns: Sequence[str]) -> tuple[list[Record], list[RowError]]:
    """Rows of a UTF-8 CSV file (a BOM is accepted) whose header must be `columns`."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return [], [RowError(line, None, "not UTF-8 text")]
    return parse_csv_text(text, columns)


def csv_rows(
    reader: Any, columns: Sequence[str], errors: BoundedErrors, *, nul: bool = True
) -> Iterator[Row]:
    """The rows of a csv.reader after checking the header; blank lines are skipped.

    Every importer reads through here, so a malformed file is a row error with its line,
    never an exception: a cell holding NUL (PostgreSQL's text cannot store one) is
    reported and yielded without it, so the row's other rules are still checked; text
    the csv module cannot split (a cell over its size limit, usually a quote that is
    never closed) is reported at the line where that row starts, and reading stops.
    `nul=False` skips the NUL check when the caller knows the text has none."""
    line = 0  # the last line read whole: a row that cannot be read starts after it
    try:
        header = next(reader, None)
        if header is None:
            errors.add(1, None, "empty file: a header line is required")
            return
        if [cell.strip().lower() for cell in header] != list(columns):
            errors.add(1, None, f"header must be: {','.join(columns)}")
            return
        width = len(columns)
        line = reader.line_num
        for fields in reader:
            line = reader.line_num
            if len(fields) == width and (fields[0].strip() or any(cell.strip() for cell in fields)):
                if nul and any(NUL in cell for cell in fields):
                    fields = _without_nul(line, columns, fields, errors)
                yield line, fields
            elif any(cell.strip() for cell in fields):
                errors.add(line, None, f"expected {width} fields, found {len(fields)}")
    except csv.Error as error:
        errors.add(line + 1, None, csv_problem(error))


def _without_nul(
    line: int, columns: Sequence[str], fields: list[str], errors: BoundedErrors
) -> list[str]:
    """Report each cell holding NUL (as the other importers word control characters)."""
    for column, cell in zip(columns, fields, strict=True):
        if NUL in cell:
            errors.add(line, column, f"{column}: contains control characters")
    return [cell.replace(NUL, "") for cell in fields]


def csv_problem(error: csv.Error) -> str:
    """Why the csv module could not split the text, for a report (never the cell itself)."""
    if "field larger than field limit" in str(error):
        return (
            f"a field is longer than {csv.field_size_limit()} characters (is a closing quote"
            " missing?); the file was not read further"
        )
    return f"not valid CSV ({error}); the file was not read further"


def stream_csv(path: Path, columns: Sequence[str], errors: BoundedErrors) -> Iterator[Row]:
    """The rows of a UTF-8 CSV file, read lazily; a file that is not UTF-8 stops the import."""
    nul = file_contains(path, NUL.encode())
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield from csv_rows(csv.reader(handle), columns, errors, nul=nul)
    except UnicodeDecodeError:
        errors.stop(first_undecodable_line(path), "not UTF-8 text")


def file_contains(path: Path, needle: bytes, chunk_size: int = 1 << 20) -> bool:
    """Whether the file holds the byte string (one byte, or short: chunks overlap by it)."""
    keep = len(needle) - 1
    pending = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            data = pending + chunk
            if needle in data:
                return True
            pending = data[-keep:] if keep else b""
    return False


def first_undecodable_line(path: Path, chunk_size: int = 1 << 20) -> int:
    """The line holding the first byte sequence that is not UTF-8 (read in chunks)."""
    lines, pending = 1, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            data = pending + chunk
            cut = data.rfind(b"\n") + 1  # a newline byte never sits inside a UTF-8 sequence
            piece, pending = data[:cut], data[cut:]
            try:
                piece.decode("utf-8")
            except UnicodeDecodeError as error:
                return lines + piece[: error.start].count(b"\n")
            lines += piece.count(b"\n")
    return lines


def count_data_lines(path: Path, chunk_size: int = 1 << 20) -> int:
    """Lines after the header (an estimate of the rows, for progress bars)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return max(0, lines + (last != b"\n") - 1)


def records_from_dicts(rows: Sequence[Mapping[str, str]]) -> list[Record]:
    """Records for rows built in memory, numbered as if they followed a header line."""
    return [(index + 2, dict(row)) for index, row in enumerate(rows)]


def rows_from_records(records: Iterable[Record], columns: Sequence[str]) -> Iterator[Row]:
    """Records (column -> text) as rows in column order."""
    for line, row in records:
        yield line, [row[column] for column in columns]


def by_position(errors: Sequence[RowError], columns: Sequence[str]) -> list[RowError]:
    """Errors ordered by line, then by the column's place in the file."""
    rank = {name: index for index, name in enumerate(columns)}
    return sorted(errors, key=lambda error: (error.line, rank.get(error.column or "", -1)))


def checked_rows(
    records: Sequence[Record], columns: Sequence[str], read_errors: Sequence[RowError]
) -> tuple[BoundedErrors, Iterable[Row]]:
    """Records already read (a test, the demo) as an importer's rows, with the problems
    found while reading them."""
    errors = BoundedErrors(columns)
    for error in read_errors:
        errors.add(error.line, error.column, error.reason)
    return errors, rows_from_records(records, columns)
