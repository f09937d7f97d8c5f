"""NIK validation, masking, phone normalisation and birth-date parsing."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.identity import (
    DateProblem,
    Hasher,
    NikProblem,
    birth_date_problem,
    mask_name,
    mask_nik,
    nik_problem,
    normalize_phone,
    parse_birth_date,
)

PROVINCES = frozenset({"11", "32", "51", "91"})
TODAY = date(2026, 5, 20)


@pytest.mark.parametrize(
    ("nik", "problem"),
    [
        ("3204105507850003", None),
        ("3204101507850003", None),  # a man born on the 15th
        ("3204107107850003", None),  # day 71 = a woman born on the 31st
        ("320410550785000", NikProblem.FORMAT),
        ("32041055078500031", NikProblem.FORMAT),
        ("32041055078500a3", NikProblem.FORMAT),
        ("9904105507850003", NikProblem.PROVINCE),
        ("3204103207850003", NikProblem.DAY),
        ("3204104007850003", NikProblem.DAY),
        ("3204107207850003", NikProblem.DAY),
        ("3204105500850003", NikProblem.MONTH),
        ("3204105513850003", NikProblem.MONTH),
    ],
)
def test_nik_structure(nik: str, problem: NikProblem | None) -> None:
    assert nik_problem(nik, PROVINCES) == problem


def test_masks_show_only_what_may_be_seen() -> None:
    assert mask_nik("0003") == "************0003"
    assert mask_name("Siti Aminah") == "Siti A***"
    assert mask_name("Made Ayu Lestari") == "Made A*** L***"
    assert mask_name("Sukarno") == "S***"


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("081234567890", "+6281234567890"),
        ("+6281234567890", "+6281234567890"),
        ("6281234567890", "+6281234567890"),
        ("0812-3456-7890", "+6281234567890"),
        ("", None),
        ("12", None),
        ("0812345", None),  # possible length, but no such number
        ("not a phone", None),
    ],
)
def test_phone_normalisation(raw: str, e164: str | None) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("15-07-1985", date(1985, 7, 15)),
        ("15/07/1985", date(1985, 7, 15)),
        ("15.07.1985", date(1985, 7, 15)),
        ("15 Juli 1985", date(1985, 7, 15)),
        ("15 juli 1985", date(1985, 7, 15)),
        ("  15   Agustus  1985 ", date(1985, 8, 15)),
        ("1 Des 1950", date(1950, 12, 1)),
        ("1985-07-15", date(1985, 7, 15)),
        ("31-02-1985", None),
        ("15 Juliii 1985", None),
        ("15-07-2027", None),  # the future
        ("15-07-1850", None),
        ("kemarin", None),
        ("", None),
    ],
)
def test_birth_dates_typed_the_indonesian_way(typed: str, expected: date | None) -> None:
    assert parse_birth_date(typed, TODAY) == expected


@given(st.text(max_size=200))
def test_birth_date_parser_never_raises(text: str) -> None:
    parse_birth_date(text, TODAY)
    assert (birth_date_problem(text, TODAY) is None) == (parse_birth_date(text, TODAY) is not None)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("31-02-1972", DateProblem.NO_SUCH_DAY),
        ("30 Februari 1980", DateProblem.NO_SUCH_DAY),
        ("15-13-1985", DateProblem.NO_SUCH_DAY),
        ("15-07-2999", DateProblem.NOT_A_BIRTH_DATE),
        ("01-01-1850", DateProblem.NOT_A_BIRTH_DATE),
        ("15 Foo 1985", DateProblem.UNREADABLE),
        ("kemarin", DateProblem.UNREADABLE),
        ("15-07-1985", None),
    ],
)
def test_why_a_birth_date_was_refused(typed: str, problem: DateProblem | None) -> None:
    assert birth_date_problem(typed, TODAY) is problem


def test_hashes_are_keyed_and_distinct_per_kind() -> None:
    one, other = Hasher(b"k1"), Hasher(b"k2")
    assert one.nik("3204105507850003") != other.nik("3204105507850003")
    assert one.nik("3204105507850003") == one.nik("3204105507850003")
    assert one.nik("081234567890") != one.phone("081234567890")
    assert len(one.nik("3204105507850003")) == 64
