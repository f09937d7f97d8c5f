"""Every user-facing string is translated in id and en, nothing fuzzy, .mo files current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALES = ROOT / "locales"


def _ids(catalog) -> set[str]:
    return {message.id for message in catalog if message.id}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory):
    """The template as extracted from the sources right now."""
    out = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg",
         "-k", "_", "-k", "__", "-k", "lazy_gettext", "--no-location", "-o", str(out), "."],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    with out.open("rb") as handle:
        return read_po(handle)


@pytest.mark.parametrize("locale", ["id", "en"])
def test_catalog_is_complete_and_not_fuzzy(locale: str, extracted) -> None:
    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    assert len(_ids(extracted)) > 50, "extraction found (almost) nothing: check babel.cfg"
    missing = _ids(extracted) - _ids(catalog)
    assert not missing, f"not in the {locale} catalog (run `make catalogs`): {sorted(missing)}"
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy entries in {locale}: {fuzzy}"
    untranslated = [m.id for m in catalog if m.id and not m.string]
    assert not untranslated, f"untranslated in {locale}: {untranslated}"


@pytest.mark.parametrize("locale", ["id", "en"])
def test_placeholders_survive_translation(locale: str) -> None:
    import re

    with (LOCALES / locale / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    for message in catalog:
        if not message.id:
            continue
        assert set(re.findall(r"\{\w+\}", message.id)) == set(
            re.findall(r"\{\w+\}", message.string)
        ), message.id
        assert sorted(re.findall(r"</?\w+", message.id)) == sorted(
            re.findall(r"</?\w+", message.string)
        ), message.id


@pytest.mark.parametrize("locale", ["id", "en"])
def test_compiled_catalog_matches_source(locale: str) -> None:
    folder = LOCALES / locale / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as handle:
        source = {m.id: m.string for m in read_po(handle, locale=locale) if m.id}
    with (folder / "messages.mo").open("rb") as handle:
        compiled = {m.id: m.string for m in read_mo(handle) if m.id}
    assert compiled == source, "compiled catalog is stale: run `make compile-catalogs`"
