"""Secrets and access: SECRET_KEY, staff commands and menus, one-time links and codes.

The webhook's secret token is tested in test_webhook.py, invite tokens' entropy and single
use at the service level in test_invites.py; here the rest, through the real bot where a
user is involved.
"""

from __future__ import annotations

import logging
import re
import stat
from datetime import timedelta

import pytest
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from sqlalchemy import func, select, text

from infra.settings import SECRET_FILE_NAME, ConfigurationError, Settings
from models import AccountRole, AuditEvent, Invite, ShoppingCode
from services import accounts, invites
from tests.conftest import TEST_SECRET
from tests.support.clock import NOW, install_clock
from tests.support.people import linked_kpm, make_agent
from tests.support.shopping import WARUNG, shopping_world
from tg import texts
from tg.filters import HasRole

PG_URL = "postgresql+asyncpg://bansos:pw@db.internal:5432/bansos"

# --- SECRET_KEY --------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_secret_key_is_required_outside_the_embedded_sqlite_default(key) -> None:
    settings = Settings(_env_file=None, database_url=PG_URL, secret_key=key)
    with pytest.raises(ConfigurationError) as refused:
        settings.resolved_secret_key()
    message = str(refused.value)
    assert "SECRET_KEY must be set when DATABASE_URL is not SQLite" in message
    assert "secrets.token_urlsafe" in message  # says how to make one
    assert isinstance(refused.value, SystemExit)  # the process stops with the message


def test_the_embedded_default_needs_no_configuration(tmp_path, monkeypatch, caplog) -> None:
    """`make run` without anything set (the sandbox, or polling on SQLite) must keep working:
    the key is generated once, private to its owner, beside the database."""
    monkeypatch.chdir(tmp_path)
    for name in ("SECRET_KEY", "DATABASE_URL", "BOT_TOKEN", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    with caplog.at_level(logging.WARNING, logger="infra.settings"):
        key = settings.resolved_secret_key()
    secret_file = tmp_path / SECRET_FILE_NAME
    assert secret_file.read_text().encode() == key and len(key) >= 64
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "generated one" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="infra.settings"):
        assert Settings(_env_file=None).resolved_secret_key() == key  # the same key next time
    assert caplog.text == ""
    secret_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="infra.settings"):
        assert Settings(_env_file=None).resolved_secret_key() == key
    assert "can be read by other users" in caplog.text


def test_an_explicit_key_that_differs_from_the_generated_one_is_warned_about(
    tmp_path, caplog
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'bansos.db'}"
    generated = Settings(_env_file=None, database_url=database).resolved_secret_key()
    explicit = Settings(_env_file=None, database_url=database, secret_key=TEST_SECRET)
    with caplog.at_level(logging.WARNING, logger="infra.settings"):
        assert explicit.resolved_secret_key() == TEST_SECRET.encode() != generated
    assert "no longer match" in caplog.text
    # And a webhook on that database is told where the key in use lives.
    webhook = Settings(
        _env_file=None,
        database_url=database,
        webhook_url="https://bot.example/webhook",
        webhook_secret="w" * 40,
    )
    with pytest.raises(ConfigurationError, match=re.escape(SECRET_FILE_NAME)):
        webhook.check_webhook()


def test_a_short_secret_key_is_warned_about(caplog) -> None:
    settings = Settings(_env_file=None, database_url=PG_URL, secret_key="hunter2")
    with caplog.at_level(logging.WARNING, logger="infra.settings"):
        assert settings.resolved_secret_key() == b"hunter2"
    assert "shorter than 32" in caplog.text


def test_secrets_stay_out_of_reprs() -> None:
    """Settings end up in tracebacks and debug logs; their secrets must not."""
    settings = Settings(
        _env_file=None,
        bot_token="123456:AAE-very-secret-token",
        database_url=PG_URL,
        redis_url="redis://:redispw@cache:6379/0",
        secret_key=TEST_SECRET,
        webhook_secret="w" * 40,
    )
    shown = repr(settings) + str(settings)
    for secret in ("AAE-very-secret-token", ":pw@", "redispw", TEST_SECRET, "w" * 40):
        assert secret not in shown


# --- staff commands and menus -------------------------------------------------------

REFUSALS = {"admin": "hanya untuk admin", "agent": "hanya untuk agen"}


def staff_commands(dp: Dispatcher) -> dict[str, set[str]]:
    """Every command a role filter guards, by role, read from the live routers."""
    found: dict[str, set[str]] = {}

    def walk(router: Router) -> None:
        for handler in router.message.handlers:
            filters = [f.callback for f in handler.filters or []]
            roles = [f.role for f in filters if isinstance(f, HasRole)]
            names = [
                name
                for f in filters
                if isinstance(f, Command)
                for name in f.commands
                if isinstance(name, str)
            ]
            for role in roles:
                found.setdefault(role, set()).update(names)
        for sub in router.sub_routers:
            walk(sub)

    walk(dp)
    return found


def menu_names(menu: list[dict[str, str]]) -> set[str]:
    return {entry["command"] for entry in menu}


@pytest.fixture
async def world(bot_app, sessionmaker, tmp_path):
    """The bot with the test registry and e-Warongs, on a clock the test can move."""
    await shopping_world(sessionmaker, bot_app.ctx.hasher, tmp_path)
    install_clock(bot_app)
    return bot_app


def in_indonesian(app, *labels) -> list[str]:
    i18n = app.dp.workflow_data["i18n"]
    with i18n.context(), i18n.use_locale("id"):
        return [str(label) for label in labels]


async def test_staff_commands_are_in_no_one_elses_command_menu(world, sessionmaker) -> None:
    guarded = staff_commands(world.dp)
    admin_commands = guarded.get("admin", set())
    assert {"sengketa", "undang_agen", "undang_mitra", "hapus_agen"} <= admin_commands
    every_staff_command = set().union(*guarded.values())
    stored = await world.client.commands()
    assert stored, "setMyCommands was never called"
    for entry in stored:  # every scope and language set with setMyCommands
        if entry["scope"].get("type") == "chat":
            continue  # a staff member's own menu may list them
        assert not menu_names(entry["commands"]) & every_staff_command, entry
    plain = await world.user("Siti")
    await plain.send("/start")
    english = await world.user("Nur", language_code="en")
    agent, _ = await make_agent(world, sessionmaker)
    for user in (plain, english, agent):
        menu = menu_names(await user.commands())
        assert "start" in menu and not menu & admin_commands, menu


async def test_staff_commands_typed_by_others_are_refused_politely(world, sessionmaker) -> None:
    guarded = staff_commands(world.dp)
    agent, _ = await make_agent(world, sessionmaker)
    plain = await world.user("Budi")
    async with sessionmaker() as session:
        audited = await session.scalar(select(func.count()).select_from(AuditEvent))
    arguments = {"undang_agen": WARUNG["code"], "undang_mitra": "IPWL-1", "hapus_agen": "1 X"}
    for role, commands in guarded.items():
        for user in (plain, agent):
            if role == "agent" and user is agent:
                continue
            for command in sorted(commands):
                typed = f"/{command} {arguments.get(command, '')}".strip()
                reply = (await user.send(typed))[-1].text
                assert REFUSALS.get(role, "hanya untuk") in reply, (typed, reply)
    async with sessionmaker() as session:
        # Nothing was done: no invite made, no role changed, nothing new in the audit trail.
        assert await session.scalar(select(func.count()).select_from(Invite)) == 1  # the agent's
        roles = await session.execute(select(AccountRole.telegram_id, AccountRole.role))
        assert sorted(tuple(row) for row in roles) == [(agent.id, "agent")]
        assert await session.scalar(select(func.count()).select_from(AuditEvent)) == audited
    # The same command from an admin works: the refusal was about the sender.
    admin = await world.user("Admin")
    async with sessionmaker() as session, session.begin():
        await accounts.ensure_national_admins(session, [admin.id])
    assert "t.me/" in (await admin.send(f"/undang_agen {WARUNG['code']}"))[-1].text


async def test_staff_buttons_are_not_offered_to_others_and_refused_if_typed(world) -> None:
    agent_labels = in_indonesian(world, texts.BTN_NEW_REDEMPTION, texts.BTN_TODAY, texts.BTN_EXPORT)
    admin_labels = in_indonesian(
        world,
        texts.BTN_DISPUTES,
        texts.BTN_BROADCAST,
        texts.BTN_STATS,
        texts.BTN_INVITE,
        texts.BTN_PENDING_REFERRALS,
    )
    user = await world.user("Siti")
    await user.send("/start")
    keyboard = await user.reply_keyboard() or []
    assert keyboard and not set(keyboard) & set(agent_labels + admin_labels), keyboard
    for label in agent_labels:
        assert REFUSALS["agent"] in (await user.send(label))[-1].text, label
    for label in admin_labels:
        assert REFUSALS["admin"] in (await user.send(label))[-1].text, label


# --- one-time links and codes through the chat --------------------------------------


async def test_an_invite_link_works_once_and_the_second_person_gets_nothing(
    world, sessionmaker
) -> None:
    agent, payload = await make_agent(world, sessionmaker)
    copycat = await world.user("Copycat")
    assert "sudah dipakai" in (await copycat.send(f"/start {payload}"))[-1].text
    assert "sudah dipakai" in (await agent.send(f"/start {payload}"))[-1].text
    assert (
        REFUSALS["agent"] in (await copycat.send(in_indonesian(world, texts.BTN_TODAY)[0]))[-1].text
    )
    async with sessionmaker() as session:
        holders = await session.scalars(
            select(AccountRole.telegram_id).where(AccountRole.role == "agent")
        )
        assert list(holders) == [agent.id]
        # Only the token's hash is stored.
        token = payload.removeprefix(invites.PAYLOAD_PREFIX)
        for row in await session.execute(text("SELECT * FROM invites")):
            assert token not in " ".join(map(str, row))
    # A link not used in time is refused too.
    async with sessionmaker() as session, session.begin():
        late = await invites.create_invite(
            session, "agent", WARUNG["code"], created_by=None, now=NOW
        )
    world.clock.now = NOW + invites.INVITE_TTL + timedelta(seconds=1)
    assert "kedaluwarsa" in (await copycat.send(f"/start {late}"))[-1].text


async def test_a_shopping_code_is_stored_hashed_and_spent_once(world, sessionmaker) -> None:
    agent, _ = await make_agent(world, sessionmaker)
    kpm = await linked_kpm(world)
    match = re.search(r"<b>(\d{4} \d{4} \d{4})</b>", (await kpm.press("Kode belanja"))[-1].html)
    assert match
    code = match.group(1).replace(" ", "")
    async with sessionmaker() as session:
        stored = (await session.execute(select(ShoppingCode))).scalar_one()
        assert stored.code_hash == world.ctx.hasher.digest("shopping-code", code) != code
        assert code not in stored.code_hash
    await agent.press("Transaksi baru")
    await agent.send(code)
    await agent.press("Beras")
    await agent.send("20000")
    await agent.press("Selesai")
    assert any("Rp20.000" in m.text for m in await agent.press("Konfirmasi"))
    # The same code again, by the same agent or another: not valid any more.
    for user in (agent, (await make_agent(world, sessionmaker, name="Dedi"))[0]):
        await user.press("Transaksi baru")
        reply = (await user.send(code))[-1].text
        assert "Tidak berlaku" in reply, reply
    async with sessionmaker() as session:
        assert (await session.execute(select(ShoppingCode))).scalar_one().used_at is not None
