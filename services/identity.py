"""NIK, phone and birth-date handling: validation, normalisation and keyed hashing.

A NIK is 16 digits `PPKKCCDDMMYYSSSS`: PP a province code, DD the birth day (plus 40
for women), MM the birth month. It is never stored; only HMAC-SHA256 under the
secret key (for lookup) and its last four digits (for display).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import phonenumbers

NIK_RE = re.compile(r"^\d{16}$")
KKS_RE = re.compile(r"^\d{16}$")


class NikProblem(StrEnum):
    FORMAT = "format"  # not 16 digits
    PROVINCE = "province"  # PP is not a province code
    DAY = "day"  # DD not 01-31 or 41-71
    MONTH = "month"  # MM not 01-12


def clean_digits(text: str) -> str:
    """Drop the spaces, dots and dashes people type inside long numbers."""
    return re.sub(r"[\s.\-]", "", text)


def nik_problem(nik: str, province_codes: frozenset[str] | set[str]) -> NikProblem | None:
    """Why `nik` cannot be a NIK, or None when its structure is valid."""
    if not NIK_RE.match(nik):
        return NikProblem.FORMAT
    if nik[:2] not in province_codes:
        return NikProblem.PROVINCE
    day, month = int(nik[6:8]), int(nik[8:10])
    if not (1 <= day <= 31 or 41 <= day <= 71):
        return NikProblem.DAY
    if not 1 <= month <= 12:
        return NikProblem.MONTH
    return None


def mask_nik(last4: str) -> str:
    """What a user or agent may see of a NIK: only the last four digits."""
    return "*" * 12 + last4


def mask_name(name: str) -> str:
    """`Siti Aminah` -> `Siti A***`: first word whole, then initials."""
    words = name.split()
    if not words:
        return "***"
    rest = [word[0] + "***" for word in words[1:]]
    return " ".join([words[0], *rest]) if rest else words[0][0] + "***"


def normalize_phone(raw: str) -> str | None:
    """An Indonesian phone number in E.164 (`+6281234567890`), or None when invalid."""
    text = raw.strip()
    if not text:
        return None
    if text.isdigit() and text.startswith("62"):
        text = "+" + text
    try:
        number = phonenumbers.parse(text, "ID")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True)
class Hasher:
    """Keyed hashing of identifiers (NIK, phone, KKS number) under SECRET_KEY."""

    key: bytes

    def digest(self, kind: str, value: str) -> str:
        return hmac.new(self.key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def nik(self, nik: str) -> str:
        return self.digest("nik", nik)

    def phone(self, e164: str) -> str:
        return self.digest("phone", e164)

    def kks(self, kks_number: str) -> str:
        return self.digest("kks", kks_number)


MONTHS_ID = {
    "januari": 1, "jan": 1, "februari": 2, "feb": 2, "pebruari": 2, "maret": 3, "mar": 3,
    "april": 4, "apr": 4, "mei": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7,
    "agustus": 8, "agu": 8, "agt": 8, "ags": 8, "september": 9, "sep": 9, "sept": 9,
    "oktober": 10, "okt": 10, "november": 11, "nov": 11, "nopember": 11,
    "desember": 12, "des": 12,
    # English names, for users who type them
    "january": 1, "february": 2, "march": 3, "may": 5, "june": 6, "july": 7,
    "august": 8, "aug": 8, "october": 10, "oct": 10, "december": 12, "dec": 12,
}  # fmt: skip

_NUMERIC_DATE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")
_WORD_DATE = re.compile(r"^(\d{1,2})\s+([a-zA-Z]+)\.?\s+(\d{4})$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _date_parts(text: str) -> tuple[int, int, int] | None:
    """(year, month, day) as typed, before checking that such a day exists."""
    text = " ".join(text.strip().split())
    if match := _NUMERIC_DATE.match(text):
        day, month, year = (int(group) for group in match.groups())
    elif match := _WORD_DATE.match(text):
        day, year = int(match.group(1)), int(match.group(3))
        month = MONTHS_ID.get(match.group(2).lower(), 0)
        if not month:
            return None
    elif match := _ISO_DATE.match(text):
        year, month, day = (int(group) for group in match.groups())
    else:
        return None
    return year, month, day


class DateProblem(StrEnum):
    UNREADABLE = "unreadable"  # not a date at all
    NO_SUCH_DAY = "no_such_day"  # read, but the calendar has no such day (31-02-1972)
    NOT_A_BIRTH_DATE = "not_a_birth_date"  # in the future, or before 1900


def read_birth_date(text: str, today: date) -> date | DateProblem:
    """A birth date typed the Indonesian way (`15-07-1985`, `15/07/1985`, `15 Juli 1985`),
    or why it is not one."""
    parts = _date_parts(text)
    if parts is None:
        return DateProblem.UNREADABLE
    try:
        result = date(*parts)
    except ValueError:
        return DateProblem.NO_SUCH_DAY
    if result > today or result.year < 1900:
        return DateProblem.NOT_A_BIRTH_DATE
    return result


def parse_birth_date(text: str, today: date) -> date | None:
    """The birth date typed, or None."""
    result = read_birth_date(text, today)
    return None if isinstance(result, DateProblem) else result


def birth_date_problem(text: str, today: date) -> DateProblem | None:
    """Why `parse_birth_date` refused `text` (None when it did not)."""
    result = read_birth_date(text, today)
    return result if isinstance(result, DateProblem) else None
