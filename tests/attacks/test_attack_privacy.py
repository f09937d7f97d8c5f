"""Privacy findings of the security review, each written as the attack or the failure a
user would notice (the real bot over real HTTP with the Bot API emulator).

11  "Delete my data" left the Napza notes, relayed chats and the requester's Telegram id,
    and partners' replies still reached the erased user.
12  Retention never reached unclosed requests: an accepted case kept its note for ever.
13  A Napza note typed and abandoned sat in Redis with no expiry.
14  At DEBUG the database driver logged SQL parameters (the note, the relayed chat).
16  (a) a forged non-ASCII erase token raised TypeError; (b) a language_code longer than
    the column broke every update of that user on PostgreSQL.

The people whose messages are checked for new wording read English (their texts are
the msgids); Indonesian readers are used where only existing, translated texts are read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from bot.runtime import configure_logging
from bot.worker import worker_tick
from infra.db import alembic_config, create_engine, upgrade_database
from infra.settings import Settings
from models import Account, AuditEvent, HelpRequest, HelpRequestOffer, RelayMessage
from services import accounts, invites
from services.napza.partners import import_partners
from tests.support.clock import NOW, install_clock
from tg.notify.napza import send_deliveries

REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"
FSM_TTL = 5400  # not aiogram's default nor the setting's: proves the setting is used
PARTNERS = """\
code,name,kind,region_codes,phone,services
IPWL-3204,IPWL Rumah Sehat Bandung,ipwl,32.04,081211112222,konseling;rawat jalan
"""
# Loggers that print SQL parameters or rows when allowed below WARNING.
DRIVER_LOGGERS = ("aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")
NOT_VALID = "This button is no longer valid."
NOT_VALID_ID = "Tombol ini sudah tidak berlaku."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings with a distinctive FSM TTL (read when the bot is built)."""
    settings.fsm_ttl_seconds = FSM_TTL
    return settings


@pytest.fixture
async def app(bot_app, sessionmaker, tmp_path):
    path = tmp_path / "partners.csv"
    path.write_text(PARTNERS, encoding="utf-8")
    report = await import_partners(sessionmaker, path)
    assert report.ok, report.errors
    install_clock(bot_app)
    return bot_app


async def staff(app, sessionmaker, name: str = "Ana"):
    """A member of IPWL-3204's staff, reading English."""
    async with sessionmaker() as session, session.begin():
        payload = await invites.create_invite(
            session, "partner", "IPWL-3204", created_by=None, now=app.clock()
        )
    member = await app.user(name, language_code="en")
    await member.send(f"/start {payload}")
    return member


async def national_admin(app, sessionmaker):
    admin = await app.user("Admin", language_code="en")
    await admin.send("/start")  # the account remembers English
    async with sessionmaker() as session, session.begin():
        await accounts.ensure_national_admins(session, [admin.id])
    return admin


async def ask_for_help(user, note: str, *, region="bandung", pick="Kabupaten Bandung") -> str:
    """An English-reading requester walks the questionnaire; the ticket."""
    await user.send("/napza")
    await user.press("Continue")
    await user.press("A family member")
    await user.press("18–25")
    await user.press("Outpatient care (rawat jalan)")
    await user.send(region)
    await user.press(pick)
    await user.press("Not urgent")
    await user.send(note)
    replies = await user.press("Yes, send it")
    match = re.search(r"NPZ-[0-9A-Z]{6}", replies[-1].text)
    assert match, replies[-1].text
    return match.group(0)


async def request_of(sessionmaker, ticket: str) -> HelpRequest:
    async with sessionmaker() as session:
        found = await session.scalar(select(HelpRequest).where(HelpRequest.ticket == ticket))
    assert found is not None
    return found


async def relay_count(sessionmaker, request_id: int) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(RelayMessage)
                .where(RelayMessage.request_id == request_id)
            )
            or 0
        )


async def actions(sessionmaker) -> list[str]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


async def run_worker(app, sessionmaker) -> None:
    deliveries = await worker_tick(app.ctx, app.clock())
    async with sessionmaker() as session, session.begin():
        await send_deliveries(app.bot, app.dp.workflow_data["i18n"], session, deliveries)


def texts_of(messages) -> str:
    return "\n".join(m.text for m in messages)


# --- finding 11 ----------------------------------------------------------------------


async def test_finding_11_delete_my_data_withdraws_and_forgets_every_napza_request(
    app, sessionmaker
):
    ana = await staff(app, sessionmaker)
    admin = await national_admin(app, sessionmaker)
    rina = await app.user("Rina", language_code="en", username="rina_secret")

    # An earlier case, closed, with its note and chat still within retention.
    closed = await ask_for_help(rina, "first-secret-note")
    await ana.press("Accept")
    await rina.press("Chat with the organisation")
    await rina.send("first-secret-chat")
    await ana.press("Close the case")
    await ana.press("Referred (dirujuk)")
    # An accepted case, chatting both ways; Ana is in the middle of replying.
    accepted = await ask_for_help(rina, "second-secret-note")
    await ana.press("Accept")
    await rina.press("Chat with the organisation")
    await rina.send("second-secret-chat")
    await ana.press("Reply")
    await ana.send("partner-reply-before")
    assert "partner-reply-before" in (await rina.last()).text
    # A case nobody covers (Sleman): escalated to the admins at once.
    escalated = await ask_for_help(
        rina, "third-secret-note", region="sleman", pick="Kabupaten Sleman"
    )
    assert escalated in (await admin.last()).text

    # The confirmation says what goes and what stays, in a few lines.
    ask = (await rina.send("/delete"))[-1]
    assert len(ask.text.splitlines()) <= 8, ask.text
    for words in (
        "KPM", "language", "Napza", "notes", "chats", "cancelled",  # erased
        "registry", "aid", "transaction history", "record",  # kept
    ):  # fmt: skip
        assert words in ask.text, words
    await rina.press("Yes, delete")
    seen_by_rina = len(await rina.messages())

    # The staff member who had the open case is told it was withdrawn, by ticket only.
    told = texts_of(await ana.messages())
    withdrawn = (await ana.last()).text
    assert accepted in withdrawn and "withdrawn" in withdrawn
    assert "The requester cancelled this request." in told
    for leak in ("Rina", "rina_secret", str(rina.id)):
        assert leak not in told, leak
    # Their Accept/Decline notice no longer carries the note.
    assert "second-secret-note" not in texts_of(
        [m for m in await ana.messages() if "cancelled" in m.text]
    )
    # The admins asked to arrange help for the escalated case are told too.
    admin_last = (await admin.last()).text
    assert escalated in admin_last and "withdrawn" in admin_last
    assert "Rina" not in texts_of(await admin.messages())

    # Ana's next message, typed in the chat she had open, reaches nobody.
    assert "closed" in (await ana.send("partner-reply-after"))[-1].text
    request = await request_of(sessionmaker, accepted)
    await ana.callback((await ana.last()).message_id, f"prt:reply:{request.id}")
    assert (await ana.callback_answers())[-1]["text"] == NOT_VALID
    assert len(await rina.messages()) == seen_by_rina
    assert "partner-reply-after" not in texts_of(await rina.messages())

    # Nothing of the requester is left in any of the three requests.
    states = {}
    for ticket in (closed, accepted, escalated):
        stored = await request_of(sessionmaker, ticket)
        states[ticket] = stored.status
        assert stored.requester_telegram_id is None, ticket
        assert stored.note is None, ticket
        assert await relay_count(sessionmaker, stored.id) == 0, ticket
    assert states == {closed: "closed", accepted: "cancelled", escalated: "cancelled"}
    async with sessionmaker() as session:
        named = await session.scalar(
            select(func.count())
            .select_from(HelpRequestOffer)
            .where(HelpRequestOffer.ended_by == rina.id)
        )
        assert named == 0
        assert await session.get(Account, rina.id) is None
    done = await actions(sessionmaker)
    assert "account.erased" in done and "napza.requester_erased" in done

    # Coming back, the person has no requests any more.
    await rina.send("/start")
    assert "no Napza help requests" in (await rina.send("/ticket"))[-1].text


# --- finding 12 ----------------------------------------------------------------------


async def test_finding_12_an_accepted_case_left_idle_is_closed_and_loses_its_note(
    app, sessionmaker
):
    ana = await staff(app, sessionmaker)
    rina = await app.user("Rina", language_code="en")
    ticket = await ask_for_help(rina, "idle-secret-note")
    await ana.press("Accept")
    await rina.press("Chat with the organisation")
    await rina.send("idle-secret-chat")
    await rina.send("/cancel")

    # Day 60: the organisation writes; the case is alive.
    app.clock.now = NOW + timedelta(days=60)
    await ana.press("Reply")
    await ana.send("still-here")
    await ana.send("/cancel")
    # Day 100: 100 days since the request, 40 since the last activity: kept.
    app.clock.now = NOW + timedelta(days=100)
    await run_worker(app, sessionmaker)
    kept = await request_of(sessionmaker, ticket)
    assert kept.status == "accepted" and kept.note == "idle-secret-note"
    # Day 151: 91 days without activity: closed for lack of activity, and purged.
    app.clock.now = NOW + timedelta(days=151)
    await run_worker(app, sessionmaker)
    gone = await request_of(sessionmaker, ticket)
    assert gone.status == "closed" and gone.outcome == "tidak_ada_aktivitas"
    assert gone.note is None and gone.purged_at is not None
    assert await relay_count(sessionmaker, gone.id) == 0
    assert {"napza.closed_no_activity", "napza.purged"} <= set(await actions(sessionmaker))

    # What the people notice: the ticket reads closed and the old buttons are dead.
    assert "closed" in (await rina.send(f"/ticket {ticket}"))[-1].text
    await rina.press("Chat with the organisation")
    assert (await rina.callback_answers())[-1]["text"] == NOT_VALID
    await ana.callback((await ana.last()).message_id, f"prt:close:{gone.id}")
    assert (await ana.callback_answers())[-1]["text"] == NOT_VALID
    # "No activity" is the system's outcome, not a button anyone is offered.
    other = await request_of(sessionmaker, await ask_for_help(rina, "fresh"))
    await ana.press("Accept")
    outcome_menu = (await ana.callback((await ana.last()).message_id, f"prt:close:{other.id}"))[-1]
    assert "Referred (dirujuk)" in outcome_menu.button_labels
    assert "Closed for lack of activity" not in outcome_menu.button_labels


async def test_finding_12_migration_fills_last_activity_from_existing_columns(
    database_url: str, tmp_path: Path
) -> None:
    """Requests stored before 0007 get their last activity from what they already hold;
    the downgrade gives erased requests a requester id nobody has."""
    url, cleanup = await _scratch_database(database_url, tmp_path)
    try:
        await asyncio.to_thread(upgrade_database, url, "0006")
        engine = create_engine(url)
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        is_sqlite = engine.dialect.name == "sqlite"

        def at(days: int) -> object:
            value = t0 + timedelta(days=days)
            return value.replace(tzinfo=None) if is_sqlite else value

        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO regions (code, name, level) VALUES ('32.04', 'Bandung', 2)")
            )
            for request_id, created, accepted, closed in (
                (1, 0, 3, 20), (2, 0, 5, None), (3, 0, None, None),
            ):  # fmt: skip
                await conn.execute(
                    text(
                        "INSERT INTO help_requests (id, ticket, requester_telegram_id, for_whom,"
                        " age_group, help_type, region_code, urgent, consent_at, status,"
                        " accepted_at, closed_at, created_at) VALUES (:id, :ticket, 77,"
                        " 'self', '18_25', 'konseling', '32.04', false, :created, 'accepted',"
                        " :accepted, :closed, :created)"
                    ),
                    {
                        "id": request_id,
                        "ticket": f"NPZ-AAAAA{request_id}",
                        "created": at(created),
                        "accepted": None if accepted is None else at(accepted),
                        "closed": None if closed is None else at(closed),
                    },
                )
            await conn.execute(
                text(
                    "INSERT INTO relay_messages (request_id, sender, text, created_at)"
                    " VALUES (2, 'requester', 'x', :at)"
                ),
                {"at": at(9)},
            )
        await engine.dispose()
        await asyncio.to_thread(upgrade_database, url, "0007")
        engine = create_engine(url)
        async with engine.connect() as conn:
            rows = dict(
                (await conn.execute(text("SELECT id, last_activity_at FROM help_requests"))).all()
            )
            # SQLite rebuilds the table: its children must survive (no cascade).
            assert await conn.scalar(text("SELECT count(*) FROM relay_messages")) == 1
            await conn.execute(
                text("UPDATE help_requests SET requester_telegram_id = NULL WHERE id = 3")
            )
            await conn.commit()
        await engine.dispose()
        found = {
            key: (value if isinstance(value, datetime) else datetime.fromisoformat(value))
            for key, value in rows.items()
        }
        assert {key: value.replace(tzinfo=None) for key, value in found.items()} == {
            1: datetime(2026, 1, 21),  # closed on day 20
            2: datetime(2026, 1, 10),  # chatted on day 9, after accepting on day 5
            3: datetime(2026, 1, 1),  # only created
        }
        from alembic import command

        await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
        engine = create_engine(url)
        async with engine.connect() as conn:
            ids = dict(
                (
                    await conn.execute(text("SELECT id, requester_telegram_id FROM help_requests"))
                ).all()
            )
        await engine.dispose()
        assert ids == {1: 77, 2: 77, 3: 0}
    finally:
        await cleanup()


async def _scratch_database(database_url: str, tmp_path: Path):
    """A fresh, empty database of the same kind as the test database, and its cleanup."""
    if not database_url.startswith("postgresql"):

        async def nothing() -> None:
            return None

        return f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}", nothing
    base, _, name = database_url.rpartition("/")
    scratch = f"{name}_mig0007"
    # WITH (FORCE), PostgreSQL 13+: also ends a connection a failed run left open.
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        await conn.execute(text(f'CREATE DATABASE "{scratch}"'))
    await admin.dispose()

    async def drop() -> None:
        engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
        await engine.dispose()

    return f"{base}/{scratch}", drop


# --- finding 13 ----------------------------------------------------------------------


async def test_finding_13_an_abandoned_napza_note_expires_from_redis(app, redis_url: str | None):
    if not redis_url:
        message = "TEST_REDIS_URL is not set: FSM expiry needs a real Redis"
        if REQUIRED:
            pytest.fail(message)
        pytest.skip(message)
    from redis.asyncio import Redis

    rina = await app.user("Rina", language_code="en")
    await rina.send("/napza")
    await rina.press("Continue")
    await rina.press("A family member")
    await rina.press("18–25")
    await rina.press("Outpatient care (rawat jalan)")
    await rina.send("bandung")
    await rina.press("Kabupaten Bandung")
    await rina.press("Not urgent")
    await rina.send("abandoned-secret-note")  # ... and never answers the consent question

    redis = Redis.from_url(redis_url)
    try:
        keys = [key.decode() async for key in redis.scan_iter(match=f"fsm:*{rina.id}*")]
        suffixes = sorted(key.rsplit(":", 1)[-1] for key in keys)
        assert suffixes == ["data", "state"], keys
        data_key = next(key for key in keys if key.endswith(":data"))
        assert b"abandoned-secret-note" in (await redis.get(data_key) or b"")
        for key in keys:
            ttl = await redis.ttl(key)
            assert 0 < ttl <= FSM_TTL, (key, ttl)  # -1 is "kept for ever"
    finally:
        await redis.aclose()


# --- finding 14 ----------------------------------------------------------------------


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = record.getMessage()
        if record.exc_info:
            line += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.levelname} {record.name} {line}")


@pytest.fixture
def debug_logging() -> Iterator[_Collect]:
    """configure_logging(DEBUG) as LOG_LEVEL=DEBUG would, plus a handler that keeps every
    line on the root logger; everything is put back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in DRIVER_LOGGERS}
    configure_logging(logging.DEBUG)
    collect = _Collect()
    root.addHandler(collect)
    try:
        yield collect
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_finding_14_debug_logging_never_prints_the_note_or_the_chat(
    app, sessionmaker, debug_logging: _Collect
):
    ana = await staff(app, sessionmaker)
    rina = await app.user("Rina", language_code="en")
    await ask_for_help(rina, "note-for-the-log-7Q2")
    await ana.press("Accept")
    await rina.press("Chat with the organisation")
    await rina.send("chat-for-the-log-8R3")
    await ana.press("Reply")
    await ana.send("reply-for-the-log-9S4")
    assert "reply-for-the-log-9S4" in (await rina.last()).text
    logged = "\n".join(debug_logging.lines)
    assert logging.getLogger().getEffectiveLevel() == logging.DEBUG
    assert "audit napza.created" in logged and "audit napza.relayed" in logged  # it logs
    for secret in ("note-for-the-log-7Q2", "chat-for-the-log-8R3", "reply-for-the-log-9S4"):
        assert secret not in logged, secret


# --- finding 16 ----------------------------------------------------------------------


async def test_finding_16a_a_forged_non_ascii_erase_token_is_refused_quietly(
    app, sessionmaker, caplog
):
    caplog.set_level(logging.WARNING)
    budi = await app.user("Budi")
    await budi.send("/start")
    ask = (await budi.send("/hapus"))[-1]
    before = len(await budi.messages())
    await budi.callback(ask.message_id, "erase:yes:é")
    assert (await budi.callback_answers())[-1]["text"] == NOT_VALID_ID
    assert len(await budi.messages()) == before  # no "something went wrong"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [f"{r.name}: {r.getMessage()}" for r in errors]
    async with sessionmaker() as session:
        assert await session.get(Account, budi.id) is not None  # nothing erased
    # The real confirmation still works.
    assert "Tidak ada yang dihapus" in (await budi.press("Tidak, simpan"))[-1].text


async def test_finding_16b_an_overlong_language_code_is_not_stored(app, sessionmaker):
    odd = await app.user("Odd", language_code="x" * 40)
    assert "Halo, Odd!" in (await odd.send("/start"))[-1].text  # the default language
    assert "Halo, Odd!" in (await odd.send("/start"))[-1].text  # and again: not broken
    fine = await app.user("Fine", language_code="pt-br")
    await fine.send("/start")
    later = await app.client.user(fine.id, "Fine", language_code="zz-" + "a" * 30)
    assert "Halo, Fine!" in (await later.send("/start"))[-1].text
    async with sessionmaker() as session:
        assert (await session.get(Account, odd.id)).language_code is None
        assert (await session.get(Account, fine.id)).language_code is None
    english = await app.user("Jane", language_code="en-GB")
    assert "Hello, Jane!" in (await english.send("/start"))[-1].text
    async with sessionmaker() as session:
        assert (await session.get(Account, english.id)).language_code == "en-GB"
