"""The operations commands (`import ewarongs`, `invite`, `agent remove`) on a fresh SQLite."""

from __future__ import annotations

import asyncio
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from infra.db import create_engine, create_sessionmaker
from models import Invite
from sandbox.emulator import BotApiEmulator
from services.invites import accept_invite, agents_of
from tests.conftest import TEST_SECRET

HEADER = "code,name,village_code,address,latitude,longitude,bank"
SHOPS = (
    "BDG-01,Warung Bu Siti,32.73.01.1001,Jl. Diponegoro 22,-6.9025,107.6187,BRI",
    "MKS-01,Warung Losari,73.71.01.1001,Jl. Penghibur 1,-5.1436,119.4075,BRI",
    "JAP-01,Warung Jayapura,91.71.01.1001,Jl. Ahmad Yani 3,-2.5337,140.7181,BNI",
)
PAYLOAD_RE = re.compile(r"inv_[A-Za-z0-9_-]{22,60}")
BOT_TOKEN = "123456:TEST-token"

runner = CliRunner()


def environment(database: Path) -> dict[str, str]:
    """The CLI's own SQLite file, a fixed secret, a wide terminal, no bot token."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SECRET_KEY": TEST_SECRET,
        "COLUMNS": "200",
        "REDIS_URL": "",
        "BOT_TOKEN": "",
        "TELEGRAM_API_URL": "",
    }


def csv_file(folder: Path, *rows: str) -> Path:
    path = folder / "ewarongs.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cli_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A database migrated through the CLI, with the regions and three e-Warongs."""
    folder = tmp_path_factory.mktemp("cli-ops")
    env = environment(folder / "bansos.db")
    for args in (["db", "upgrade"], ["import", "regions"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", "ewarongs", str(csv_file(folder, *SHOPS))], env=env)
    assert result.exit_code == 0, result.output
    assert "e-Warongs: 3 inserted, 0 updated, 0 unchanged." in result.output
    return env


def payload_in(output: str) -> str:
    found = PAYLOAD_RE.search(output)
    assert found, output
    return found.group(0)


async def _stored_invite(env: dict[str, str], payload: str) -> Invite | None:
    from services.invites import token_hash

    engine = create_engine(env["DATABASE_URL"])
    try:
        async with create_sessionmaker(engine)() as session:
            digest = token_hash(payload.removeprefix("inv_"))
            return await session.scalar(select(Invite).where(Invite.token_hash == digest))
    finally:
        await engine.dispose()


async def _accept(env: dict[str, str], payload: str, telegram_id: int) -> list[int]:
    engine = create_engine(env["DATABASE_URL"])
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            outcome = await accept_invite(session, payload, telegram_id, datetime.now(UTC))
            assert outcome.accepted, outcome
        async with sessionmaker() as session:
            return await agents_of(session, "MKS-01")
    finally:
        await engine.dispose()


# --- import ewarongs ---------------------------------------------------------------


def test_import_ewarongs_again_changes_nothing(cli_db: dict[str, str], tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", "ewarongs", str(csv_file(tmp_path, *SHOPS))], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "0 inserted, 0 updated, 3 unchanged" in result.output


def test_import_ewarongs_lists_bad_rows(cli_db: dict[str, str], tmp_path: Path) -> None:
    rows = [
        SHOPS[0].replace("Warung Bu Siti", "Warung Baru"),
        SHOPS[1].replace("73.71.01.1001", "73.71.01.9999"),
        SHOPS[2].replace("-2.5337", "-12.0"),
    ]
    result = runner.invoke(app, ["import", "ewarongs", str(csv_file(tmp_path, *rows))], env=cli_db)
    assert result.exit_code == 1
    assert "nothing imported, 2 problem(s)" in result.output
    assert "village_code: unknown village" in result.output
    assert "latitude: outside Indonesia (-11.5 to 6.5)" in result.output
    result = runner.invoke(app, ["import", "ewarongs", str(tmp_path / "nope.csv")], env=cli_db)
    assert result.exit_code == 2


def test_import_ewarongs_hints_at_db_upgrade(tmp_path: Path) -> None:
    env = environment(tmp_path / "empty.db")
    result = runner.invoke(app, ["import", "ewarongs", str(csv_file(tmp_path, *SHOPS))], env=env)
    assert result.exit_code == 1
    assert "bansos-bot db upgrade" in result.output


# --- invite ------------------------------------------------------------------------


def test_invite_agent_prints_the_link_and_local_expiry(cli_db: dict[str, str]) -> None:
    result = runner.invoke(
        app, ["invite", "agent", "MKS-01", "--bot-username", "@bansos_bot"], env=cli_db
    )
    assert result.exit_code == 0, result.output
    payload = payload_in(result.output)
    assert f"https://t.me/bansos_bot?start={payload}" in result.output
    assert "WITA" in result.output and "UTC" in result.output  # Makassar's time zone
    assert "48 hours" in result.output
    stored = asyncio.run(_stored_invite(cli_db, payload))
    assert stored is not None
    assert (stored.role, stored.scope, stored.created_by) == ("agent", "MKS-01", None)
    assert f"({stored.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" in result.output


def test_invite_agent_rejects_an_unknown_ewarong(cli_db: dict[str, str]) -> None:
    result = runner.invoke(
        app, ["invite", "agent", "NOPE-9", "--bot-username", "b_bot"], env=cli_db
    )
    assert result.exit_code == 1
    assert "no e-Warong with code NOPE-9" in result.output
    assert "inv_" not in result.output


def test_invite_partner_without_a_token_prints_the_payload(
    cli_db: dict[str, str], tmp_path: Path
) -> None:
    partners = tmp_path / "partners.csv"
    partners.write_text(
        "code,name,kind,region_codes,phone,services\n"
        "IPWL-7371,IPWL Makassar,ipwl,73.71,0411-555123,konseling\n",
        encoding="utf-8",
    )
    imported = runner.invoke(app, ["import", "partners", str(partners)], env=cli_db)
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["invite", "partner", "IPWL-7371"], env=cli_db)
    assert result.exit_code == 0, result.output
    payload = payload_in(result.output)
    assert "BOT_TOKEN is not set" in result.output
    assert "https://t.me/<bot username>?start=<payload>" in result.output
    assert "--bot-username" in result.output
    assert "WIB" in result.output
    stored = asyncio.run(_stored_invite(cli_db, payload))
    assert stored is not None and (stored.role, stored.scope) == ("partner", "IPWL-7371")


def test_invite_asks_telegram_for_the_username(cli_db: dict[str, str]) -> None:
    async def scenario() -> str:
        emulator = BotApiEmulator(token=BOT_TOKEN, bot_username="kemensos_bansos_bot")
        url = await emulator.start()
        try:
            env = {**cli_db, "BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_URL": url}
            result = await asyncio.to_thread(
                runner.invoke, app, ["invite", "agent", "JAP-01"], env=env
            )
        finally:
            await emulator.stop()
        assert result.exit_code == 0, result.output
        return result.output

    output = asyncio.run(scenario())
    assert f"https://t.me/kemensos_bansos_bot?start={payload_in(output)}" in output
    assert "WIT " in output  # Jayapura


def test_invite_survives_an_unreachable_telegram(cli_db: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**cli_db, "BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_URL": f"http://127.0.0.1:{port}"}
    result = runner.invoke(app, ["invite", "agent", "BDG-01"], env=env)
    assert result.exit_code == 0, result.output
    assert "Could not ask Telegram" in result.output
    payload_in(result.output)
    assert "start=<payload>" in result.output


# --- agent remove ------------------------------------------------------------------


def test_agent_remove(cli_db: dict[str, str]) -> None:
    result = runner.invoke(
        app, ["invite", "agent", "MKS-01", "--bot-username", "b_bot"], env=cli_db
    )
    assert result.exit_code == 0, result.output
    assert asyncio.run(_accept(cli_db, payload_in(result.output), 7_000_001)) == [7_000_001]
    result = runner.invoke(app, ["agent", "remove", "7000001", "MKS-01"], env=cli_db)
    assert result.exit_code == 0, result.output
    assert "7000001 is no longer an agent of e-Warong MKS-01" in result.output
    result = runner.invoke(app, ["agent", "remove", "7000001", "MKS-01"], env=cli_db)
    assert result.exit_code == 1
    assert "7000001 is not an agent of e-Warong MKS-01" in result.output
    result = runner.invoke(app, ["agent", "remove", "not-a-number", "MKS-01"], env=cli_db)
    assert result.exit_code == 2
