"""The rules of one field of an import row: NIK, names, dates, phones, programs,
PKH components, periods, amounts and statuses.

Programs and statuses are the vocabularies of `models.enums` (`Program`,
`DisbursementStatus`); the importers test raw text against them and store the text.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from models import Region
from models.disbursement import UNDATED_STATUSES
from models.enums import DisbursementStatus, Program
from services.identity import Hasher, NikProblem, normalize_phone

# The vocabularies as sets, to test raw text (`"PKH" in Program` raises TypeError on
# Python 3.11; a StrEnum member hashes and compares as its value).
PROGRAM_VALUES: frozenset[str] = frozenset(Program)
STATUS_VALUES: frozenset[str] = frozenset(DisbursementStatus)
PROGRAM_REASON = f"program: must be {' or '.join(Program)}"
STATUS_REASON = f"status: must be one of {', '.join(DisbursementStatus)}"
PKH_COMPONENTS = (
    "ibu_hamil",
    "anak_usia_dini",
    "anak_sd",
    "anak_smp",
    "anak_sma",
    "disabilitas_berat",
    "lansia",
)
# A date is required once a disbursement is paid or failed; approved (ditetapkan) and at
# the bank (diproses) rows often have none yet (models.disbursement.UNDATED_STATUSES).
DATED_STATUSES = tuple(status for status in DisbursementStatus if status not in UNDATED_STATUSES)
PERIOD_RES = {
    Program.PKH: re.compile(r"^\d{4}-T[1-4]$"),
    Program.BPNT: re.compile(r"^\d{4}-(0[1-9]|1[0-2])$"),
}
PERIOD_FORMATS = {Program.PKH: "YYYY-T1 to YYYY-T4", Program.BPNT: "YYYY-MM"}
NAME_MAX = 200
AMOUNT_MAX = 10**12
ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ASCII_DIGITS_RE = re.compile(r"^[0-9]+$")
COMPONENT_COUNT_MAX = 99  # members of one family in one component
# Indonesian mobile numbers typed as 08..., 628... or +628...: valid by the mobile
# pattern of phonenumbers' metadata for ID (`8[1-35-9]\d{7,10}`), so they skip the
# (slow) full parse; tests check that this agrees with `normalize_phone`.
MOBILE_RE = re.compile(r"(?:0|\+?62)(8[1-35-9]\d{7,10})")
NIK_REASONS = {
    NikProblem.FORMAT: "nik: not 16 digits",
    NikProblem.PROVINCE: "nik: unknown province code",
    NikProblem.DAY: "nik: birth day is not 01-31 (41-71 for women)",
    NikProblem.MONTH: "nik: birth month is not 01-12",
}


def nik_birth_date(nik: str) -> tuple[int, int, int]:
    """(day, month, two-digit year) encoded in a structurally valid NIK."""
    day = int(nik[6:8])
    return (day - 40 if day > 40 else day), int(nik[8:10]), int(nik[10:12])


def birth_date_matches_nik(nik: str, birth_date: date) -> bool:
    """Whether a birth date agrees with the NIK's DDMMYY (DD + 40 for women)."""
    return nik_birth_date(nik) == (birth_date.day, birth_date.month, birth_date.year % 100)


def parse_iso_date(text: str) -> date | None:
    """A `YYYY-MM-DD` date, or None."""
    if not ISO_DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_amount(text: str) -> tuple[int | None, str | None]:
    """A positive whole rupiah amount, or the reason it is not one."""
    if text.startswith("-"):
        return None, "amount: must be positive"
    if re.search(r"[.,]", text):
        return None, "amount: must be whole rupiah without decimals or separators"
    if not ASCII_DIGITS_RE.match(text):  # str.isdigit() also passes "²", which int() refuses
        return None, "amount: not a whole number"
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(AMOUNT_MAX)):  # and int() of thousands of digits raises
        return None, "amount: too large"
    value = int(digits)
    if value <= 0:
        return None, "amount: must be positive"
    if value > AMOUNT_MAX:
        return None, "amount: too large"
    return value, None


def parse_programs(text: str) -> tuple[set[str], str | None]:
    """The programs of a `PKH;BPNT` list, or the reason it is invalid."""
    parts = {part.strip().upper() for part in text.split(";") if part.strip()}
    if not parts:
        return set(), f"programs: at least one of {', '.join(Program)} is required"
    if not parts <= PROGRAM_VALUES:
        return set(), f"programs: only {' and '.join(Program)} are allowed"
    return parts, None


def parse_components(text: str) -> tuple[dict[str, int], str | None]:
    """The counts of an `anak_sd:2;lansia:1` list, or the reason it is invalid."""
    counts: dict[str, int] = {}
    for part in (piece.strip() for piece in text.split(";")):
        if not part:
            continue
        key, colon, count = (item.strip() for item in part.partition(":"))
        key = key.lower()
        if key not in PKH_COMPONENTS:
            return {}, f"pkh_components: unknown component (allowed: {', '.join(PKH_COMPONENTS)})"
        # ASCII digits only: str.isdigit() also passes "²", which int() refuses.
        digits = count.lstrip("0") if colon and ASCII_DIGITS_RE.match(count) else ""
        if not digits:  # not a whole number, or zero
            return {}, f"pkh_components: {key} needs a positive whole count (key:count)"
        if len(digits) > len(str(COMPONENT_COUNT_MAX)) or int(digits) > COMPONENT_COUNT_MAX:
            return {}, f"pkh_components: {key} count is over {COMPONENT_COUNT_MAX}"
        if key in counts:
            return {}, f"pkh_components: {key} is listed twice"
        counts[key] = int(digits)
    return counts, None


def phone_e164(text: str) -> str | None:
    """`normalize_phone`, with a fast path for the usual Indonesian mobile numbers."""
    if match := MOBILE_RE.fullmatch(text):
        return "+62" + match.group(1)
    return normalize_phone(text)


def keyed_digest(hasher: Hasher) -> Callable[[str, str], str]:
    """`hasher.digest` as a one-call HMAC; falls back to `hasher.digest` if they ever differ."""
    key = hasher.key

    def digest(kind: str, value: str) -> str:
        return hmac.digest(key, f"{kind}:{value}".encode(), "sha256").hex()

    probe = ("nik", "3204105507850003")
    return digest if digest(*probe) == hasher.digest(*probe) else hasher.digest


class Memo(dict[str, Any]):
    """A small cache of parse results for columns with few distinct values."""

    def __init__(self, parse: Callable[[str], Any], limit: int = 50_000) -> None:
        super().__init__()
        self.parse = parse
        self.limit = limit

    def __missing__(self, key: str) -> Any:
        value = self.parse(key)
        if len(self) < self.limit:
            self[key] = value
        return value


async def province_codes(connection: AsyncConnection) -> frozenset[str]:
    """The province codes (a NIK starts with one)."""
    return frozenset(await connection.scalars(select(Region.code).where(Region.level == 1)))
