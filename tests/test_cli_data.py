"""The data commands (`db upgrade`, `import ...`, `demo`) on a fresh SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import TEST_SECRET

B_HEADER = "nik,name,birth_date,phone,kks_number,village_code,programs,pkh_components"
D_HEADER = "nik,program,period,amount,status,date"
NUR = (
    "7371016311900002,Nur Aisyah,1990-11-23,085298765432,5264221234560002,"
    "73.71.01.1006,PKH,ibu_hamil:1;anak_usia_dini:1"
)
RANI = "3273016204950001,Rani Putri,1995-04-22,,,32.73.01.1001,BPNT,"

runner = CliRunner()


def environment(database: Path) -> dict[str, str]:
    """Environment for the CLI: its own SQLite file, a fixed secret, a wide terminal."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SECRET_KEY": TEST_SECRET,
        "COLUMNS": "200",
        "REDIS_URL": "",
    }


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database migrated through the CLI, with demo data (regions imported on the way)."""
    env = environment(tmp_path_factory.mktemp("cli") / "bansos.db")
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    result = runner.invoke(app, ["demo", "--families", "6", "--seed", "3"], env=env)
    assert result.exit_code == 0, result.output
    return {**env, "DEMO_OUTPUT": result.output}


def test_commands_hint_at_db_upgrade_on_an_empty_database(tmp_path: Path) -> None:
    env = environment(tmp_path / "empty.db")
    csv = tmp_path / "people.csv"
    csv.write_text(B_HEADER + "\n", encoding="utf-8")
    for args in (["import", "regions"], ["import", "beneficiaries", str(csv)], ["demo"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output
        assert "bansos-bot db upgrade" in result.output


def test_demo_imports_regions_and_prints_identities(cli_db: dict[str, str]) -> None:
    output = cli_db["DEMO_OUTPUT"]
    assert "importing the bundled Kemendagri list" in output
    assert "3204105507850003" in output
    assert "Siti Aminah" in output
    assert "15-07-1985" in output
    assert "081234567890" in output
    assert "6 demo families" in output
    result = runner.invoke(app, ["demo", "--families", "6", "--seed", "3"], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "importing the bundled" not in result.output


def test_import_beneficiaries_and_disbursements(cli_db: dict[str, str], tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(f"{B_HEADER}\n{NUR}\n{RANI}\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "beneficiaries", str(people)], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "1 inserted, 0 updated, 1 unchanged" in result.output  # Nur is a demo family
    money = tmp_path / "money.csv"
    money.write_text(
        f"{D_HEADER}\n3273016204950001,BPNT,2026-01,200000,disalurkan,2026-01-05\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["import", "disbursements", str(money)], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "1 inserted, 0 updated, 0 unchanged" in result.output


def test_bad_rows_are_listed_with_line_numbers(cli_db: dict[str, str], tmp_path: Path) -> None:
    bad = RANI.replace("1995-04-22", "1995-04-23")
    rows = [NUR, bad] + [RANI.replace("3273", "9973")] * 60
    people = tmp_path / "people.csv"
    people.write_text("\n".join([B_HEADER, *rows]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "beneficiaries", str(people)], env=cli_db)
    assert result.exit_code == 1
    assert "nothing imported, 61 problem(s)" in result.output
    assert "birth_date: does not match the NIK" in result.output
    assert "nik: unknown province code" in result.output
    assert "... and 11 more." in result.output
    assert "9973016204950001" not in result.output
    assert "3273016204950001" not in result.output


def test_bad_region_folder_names_the_file(cli_db: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "provinces.csv").write_text("kode,nama\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "regions", str(tmp_path)], env=cli_db)
    assert result.exit_code == 1
    assert "provinces.csv, line 1" in result.output


def test_missing_file_is_a_usage_error(cli_db: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", "beneficiaries", str(tmp_path / "nope.csv")], env=cli_db)
    assert result.exit_code == 2


def test_import_regions_if_empty_skips_a_loaded_table(cli_db: dict[str, str]) -> None:
    result = runner.invoke(app, ["import", "regions", "--if-empty"], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "already loaded" in result.output


def test_problems_beyond_those_kept_are_counted(
    cli_db: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.imports import csvfile

    monkeypatch.setattr(csvfile, "MAX_ERRORS", 5)  # a report keeps the first problems only
    people = tmp_path / "people.csv"
    people.write_text("\n".join([B_HEADER, *[RANI.replace("3273", "9973")] * 8]) + "\n")
    result = runner.invoke(app, ["import", "beneficiaries", str(people)], env=cli_db)
    assert result.exit_code == 1
    assert "nothing imported, 8 problem(s)" in result.output
    assert "... and 3 more." in result.output
