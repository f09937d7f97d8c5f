"""The sandbox: emulator listener, in-process start/stop/reset, the web API, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select
from typer.testing import CliRunner

from bot.cli import app
from infra.db import create_engine, create_sessionmaker
from infra.settings import DEFAULT_DATABASE_URL
from models import Account, AccountRole, Beneficiary
from sandbox.client import ChatUser, EmulatorClient
from sandbox.emulator import BotApiEmulator
from sandbox.personas import PERSONAS, persona_by_key, seed_personas
from sandbox.runner import (
    DEFAULT_SANDBOX_DATABASE,
    SANDBOX_TOKEN,
    RemoteBindError,
    Sandbox,
    SandboxError,
    is_loopback,
)
from services.identity import Hasher
from tests.conftest import TEST_SECRET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAMILIES = 20
SITI = persona_by_key("siti")
BUDI = persona_by_key("budi")
assert SITI is not None and BUDI is not None


def _sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(
        port=0,
        database_url=_sqlite_url(tmp_path / "sandbox.db"),
        families=FAMILIES,
        secret_key=TEST_SECRET,
        settings_overrides={"throttle_burst": 1000},  # a script clicks faster than a person
    )
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with http.request(method, url, **kwargs) as response:
        return response.status, await response.json()


async def _count(sandbox: Sandbox, model: Any, *where: Any) -> int:
    engine = create_engine(sandbox.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            statement = sql_select(func.count()).select_from(model)
            for clause in where:
                statement = statement.where(clause)
            return int(await session.scalar(statement) or 0)
    finally:
        await engine.dispose()


async def _linked_to(sandbox: Sandbox, telegram_id: int) -> str | None:
    """The name of the family this Telegram account is linked to, if any."""
    engine = create_engine(sandbox.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            account = await session.get(Account, telegram_id)
            if account is None or account.beneficiary_id is None:
                return None
            beneficiary = await session.get(Beneficiary, account.beneficiary_id)
            return beneficiary.name if beneficiary else None
    finally:
        await engine.dispose()


class SandboxUser(ChatUser):
    """A persona acting through the emulator, waiting until the bot has answered."""

    def __init__(self, sandbox: Sandbox, client: EmulatorClient, key: str) -> None:
        persona = persona_by_key(key)
        assert persona is not None
        super().__init__(client, persona.telegram_id, persona.first_name, persona.phone_number)
        self.sandbox = sandbox

    async def _act(self, path: str, body: dict[str, Any]) -> list[Any]:
        sent = await self.client.request("POST", f"/users/{self.id}/{path}", json=body)
        await self.sandbox.wait_handled(sent["update_id"])
        return await self.changed_since(sent["seq"])


# --------------------------------------------------------------------------- emulator listener


async def test_emulator_listener_reports_messages_edits_deletions_and_answers() -> None:
    emulator = BotApiEmulator(SANDBOX_TOKEN)
    await emulator.start()
    api = f"{emulator.base_url}/bot{SANDBOX_TOKEN}"
    try:
        async with (
            EmulatorClient(emulator.base_url or "") as client,
            aiohttp.ClientSession() as http,
        ):
            await client.user(501, "Siti")
            await client.user(502, "Budi")
            mine = emulator.subscribe(501)
            everything = emulator.subscribe()

            async def call(method: str, **params: Any) -> dict[str, Any]:
                async with http.post(f"{api}/{method}", json=params) as response:
                    return await response.json()

            await client.request("POST", "/users/501/messages", json={"text": "/start"})
            keyboard = {"keyboard": [[{"text": "Status bantuan"}]], "resize_keyboard": True}
            sent = await call("sendMessage", chat_id=501, text="<b>Halo</b>", parse_mode="HTML",
                              reply_markup=keyboard)  # fmt: skip
            message_id = sent["result"]["message_id"]
            buttons = {"inline_keyboard": [[{"text": "English", "callback_data": "lang:en"}]]}
            prompt = await call("sendMessage", chat_id=501, text="Pilih", reply_markup=buttons)
            await call("editMessageText", chat_id=501, message_id=message_id, text="Halo lagi")
            await call("deleteMessage", chat_id=501, message_id=message_id)
            pressed = await client.request(
                "POST",
                "/users/501/callbacks",
                json={"message_id": prompt["result"]["message_id"], "data": "lang:en"},
            )
            await call("answerCallbackQuery", callback_query_id=pressed["callback_query_id"],
                       text="OK", show_alert=True)  # fmt: skip
            await call("sendMessage", chat_id=502, text="for Budi only")
            await call("setMyCommands", commands=[{"command": "start", "description": "Menu"}])

            events = [mine.get_nowait() for _ in range(mine.qsize())]
            kinds = [event["type"] for event in events]
            assert kinds == ["message"] * 5 + ["callback_answer", "commands"]
            user, first, _, edited, deleted = (event["message"] for event in events[:5])
            assert user["text"] == "/start" and not user["from_bot"]
            assert first["text"] == "Halo" and first["entities"][0]["type"] == "bold"
            assert events[1]["reply_keyboard"]["keyboard"][0][0]["text"] == "Status bantuan"
            assert edited["message_id"] == message_id and edited["edited"]
            assert edited["text"] == "Halo lagi"
            assert deleted["message_id"] == message_id and deleted["deleted"]
            assert events[5]["answer"]["text"] == "OK" and events[5]["answer"]["show_alert"]
            assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
            assert everything.qsize() == len(events) + 1  # plus Budi's message
            assert all(event["chat_id"] == 501 for event in events if "chat_id" in event)

            emulator.unsubscribe(mine)
            await client.request("POST", "/users/501/messages", json={"sticker": {}})
            assert mine.empty()
            await client.reset()
            assert everything.get_nowait()["type"] != "reset"  # earlier events first
            while not everything.empty():
                last = everything.get_nowait()
            assert last["type"] == "reset"
            emulator.unsubscribe(everything)
    finally:
        await emulator.stop()


# --------------------------------------------------------------------------- the runner


async def test_sandbox_starts_serves_pages_and_stops_freeing_its_ports(tmp_path: Path) -> None:
    database = _sqlite_url(tmp_path / "sandbox.db")
    box = Sandbox(port=0, database_url=database, families=FAMILIES, secret_key=TEST_SECRET)
    await box.start()
    web_port, emulator_port = _port_of(box.url), _port_of(box.emulator_url)
    try:
        assert box.url.startswith("http://127.0.0.1:") and web_port
        assert [person.name for person in box.identities[:2]] == ["Siti Aminah", "Budi Santoso"]
        assert await _linked_to(box, SITI.telegram_id) == "Siti Aminah"
        assert await _count(box, Beneficiary) == FAMILIES
        async with aiohttp.ClientSession() as http:
            async with http.get(box.url + "/") as response:
                assert response.status == 200
                page = await response.text()
                assert (
                    "/static/app.js" in page
                    and "default-src 'self'" in (response.headers["Content-Security-Policy"])
                )
            for asset in ("app.js", "style.css"):
                async with http.get(f"{box.url}/static/{asset}") as response:
                    assert response.status == 200
            status, body = await _json(http, "GET", box.url + "/api/personas")
            assert status == 200
            assert [p["key"] for p in body["personas"]] == [
                "siti",
                "budi",
                "nur",
                "agen",
                "mitra",
                "admin",
            ]
            status, body = await _json(http, "GET", box.url + "/api/identities")
            siti = body["identities"][0]
            assert siti["nik"] == "3204105507850003" and siti["birth_date"] == "15-07-1985"
            assert siti["phone"] == "081234567890" and siti["programs"] == ["PKH", "BPNT"]
            status, body = await _json(http, "GET", box.url + "/api/places")
            assert {"Desa Margaasih", "Kota Jayapura"} <= {p["name"] for p in body["places"]}
    finally:
        await box.stop()
    assert _port_is_free(web_port) and _port_is_free(emulator_port)
    assert not box.running

    # Started again on the same database: nothing regenerated, identities still known.
    again = Sandbox(port=0, database_url=database, families=50, secret_key=TEST_SECRET)
    async with again:
        assert await _count(again, Beneficiary) == FAMILIES
        assert [person.nik for person in again.identities] == [
            person.nik for person in box.identities
        ]
        assert await _linked_to(again, SITI.telegram_id) == "Siti Aminah"


async def _events_until(
    http: aiohttp.ClientSession, url: str, started: asyncio.Event, predicate: Any
) -> list[dict[str, Any]]:
    """Read the SSE stream until an event satisfies `predicate`; return all events read."""
    seen: list[dict[str, Any]] = []
    async with http.get(url) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        started.set()
        async for raw in response.content:
            line = raw.decode().strip()
            if line.startswith("data: "):
                seen.append(json.loads(line.removeprefix("data: ")))
                if predicate(seen[-1]):
                    return seen
    return seen


async def test_events_stream_pushes_the_bot_replies_as_text_and_entities(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    started = asyncio.Event()

    def greeting(event: dict[str, Any]) -> bool:
        message = event.get("message") or {}
        return message.get("from_bot", False) and "Halo, Siti" in message.get("text", "")

    reader = asyncio.create_task(
        _events_until(http, f"{sandbox.url}/api/events?persona=siti", started, greeting)
    )
    await asyncio.wait_for(started.wait(), 10)
    status, _ = await _json(
        http, "POST", f"{sandbox.url}/api/chats/siti/messages", json={"text": "/start"}
    )
    assert status == 200
    events = await asyncio.wait_for(reader, 15)
    assert events[0]["message"]["text"] == "/start" and not events[0]["message"]["from_bot"]
    reply = events[-1]
    assert "html" not in reply["message"]  # the page never gets the bot's HTML
    assert any(entity["type"] == "bold" for entity in reply["message"]["entities"])
    labels = [b["text"] for row in reply["reply_keyboard"]["keyboard"] for b in row]
    assert "Status bantuan" in labels  # Siti is linked from the start

    status, chat = await _json(http, "GET", f"{sandbox.url}/api/chats/siti")
    assert [m["from_bot"] for m in chat["messages"]] == [False, True]
    assert {"command": "bahasa", "description": "Bahasa"} in chat["commands"]
    status, chat = await _json(http, "GET", f"{sandbox.url}/api/chats/nur")
    # Nur's Telegram is in English: the menu comes in English.
    assert {"command": "bahasa", "description": "Language"} in chat["commands"]


async def test_web_actions_share_contact_location_and_press_inline_buttons(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    assert sandbox.emulator_url
    async with EmulatorClient(sandbox.emulator_url) as client:
        budi = ChatUser(client, BUDI.telegram_id, BUDI.first_name, BUDI.phone_number)
        base = f"{sandbox.url}/api/chats/budi"
        await _json(http, "POST", f"{base}/messages", json={"text": "Hubungkan akun KPM"})
        await _json(http, "POST", f"{base}/messages", json={"contact": True})
        jayapura = {"latitude": -2.53, "longitude": 140.7}
        await _json(http, "POST", f"{base}/messages", json={"location": jayapura})
        await _json(http, "POST", f"{base}/messages", json={"text": "/bahasa"})
        await asyncio.sleep(0)
        view = await client.chat(BUDI.telegram_id)
        mine = [m for m in view["messages"] if not m["from_bot"]]
        assert mine[1]["contact"]["user_id"] == BUDI.telegram_id
        assert mine[1]["contact"]["phone_number"] == BUDI.phone_number
        assert mine[2]["location"] == jayapura
        for _ in range(100):
            bot_messages = await budi.messages()
            if any(m.inline_buttons for m in bot_messages):
                break
            await asyncio.sleep(0.05)
        choice = next(m for m in bot_messages if m.inline_buttons)
        data = choice.button("English")["callback_data"]
        status, _ = await _json(
            http, "POST", f"{base}/callbacks", json={"message_id": choice.message_id, "data": data}
        )
        assert status == 200
        for _ in range(100):
            edited = next(m for m in await budi.messages() if m.message_id == choice.message_id)
            if edited.edited:
                break
            await asyncio.sleep(0.05)
        assert edited.text == "Language: English" and not edited.inline_buttons

    bad = [
        ({"text": "   "}, 400),
        ({"location": {"latitude": 91, "longitude": 0}}, 400),
        ({"location": {"latitude": "x", "longitude": 0}}, 400),
        ({"photo": {}}, 400),
        ({"text": "x" * 4097}, 400),
    ]
    for body, expected in bad:
        status, answer = await _json(http, "POST", f"{base}/messages", json=body)
        assert status == expected and answer["ok"] is False, body
    status, _ = await _json(
        http, "POST", f"{base}/callbacks", json={"message_id": "1", "data": "x"}
    )
    assert status == 400
    status, _ = await _json(http, "GET", f"{sandbox.url}/api/chats/nobody")
    assert status == 404


async def test_web_refuses_foreign_hosts_origins_and_non_json_posts(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/api/chats/siti/messages"
    async with http.post(url, data="text=/start") as response:
        assert response.status == 415
    async with http.post(url, json={"text": "/start"}, headers={"Origin": "http://evil.test"}) as r:
        assert r.status == 403
    async with http.get(f"{sandbox.url}/api/personas", headers={"Host": "evil.test"}) as r:
        assert r.status == 403  # a DNS-rebinding page cannot read the sandbox
    async with http.post(url, json={"text": "/start"}, headers={"Origin": sandbox.url}) as r:
        assert r.status == 200


async def test_documents_the_bot_sends_are_offered_as_downloads(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    form = aiohttp.FormData()
    form.add_field("chat_id", str(SITI.telegram_id))
    form.add_field("caption", "Rekap <b>hari ini</b>")
    form.add_field("parse_mode", "HTML")
    form.add_field("document", b"nik,jumlah\n0003,200000\n", filename="rekap_mei.csv")
    async with http.post(f"{sandbox.emulator_url}/bot{SANDBOX_TOKEN}/sendDocument", data=form) as r:
        message_id = (await r.json())["result"]["message_id"]
    _, chat = await _json(http, "GET", f"{sandbox.url}/api/chats/siti")
    document = next(m for m in chat["messages"] if m["message_id"] == message_id)
    assert document["document"]["file_name"] == "rekap_mei.csv"
    assert "file_id" not in document["document"] and document["text"] == "Rekap hari ini"
    async with http.get(f"{sandbox.url}/api/chats/siti/files/{message_id}") as response:
        assert response.status == 200
        assert await response.read() == b"nik,jumlah\n0003,200000\n"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("attachment;") and 'filename="rekap_mei.csv"' in disposition
    # Another persona's chat has no such file.
    async with http.get(f"{sandbox.url}/api/chats/budi/files/{message_id}") as response:
        assert response.status == 404


async def test_reset_restores_the_demo_and_the_bot_keeps_answering(sandbox: Sandbox) -> None:
    budi_identity = next(p for p in sandbox.identities if p.name == "Budi Santoso")
    async with EmulatorClient(sandbox.emulator_url) as client:
        budi = SandboxUser(sandbox, client, "budi")
        await budi.send("/start")
        await budi.press("Hubungkan akun KPM")
        await budi.press("Saya punya kode aktivasi")  # no phone in the registry
        await budi.send(budi_identity.nik)
        assert budi_identity.activation_code
        replies = await budi.send(budi_identity.activation_code)
        assert "Budi S***" in replies[-1].text
        assert await _linked_to(sandbox, BUDI.telegram_id) == "Budi Santoso"
        # Half-way through linking, in another chat: FSM state that must not survive.
        nur = SandboxUser(sandbox, client, "nur")
        await nur.send("/start")
        await nur.press("Link KPM account")

        first_ctx = sandbox.ctx
        await sandbox.reset()

        assert sandbox.ctx is not first_ctx
        assert await _linked_to(sandbox, BUDI.telegram_id) is None
        assert await _linked_to(sandbox, SITI.telegram_id) == "Siti Aminah"
        assert await _count(sandbox, Beneficiary) == FAMILIES
        assert await _count(sandbox, AccountRole, AccountRole.role == "admin") == 1
        assert await budi.messages() == []  # chats are empty again
        # Update ids start again at 1 after the emulator reset: de-duplication was cleared.
        replies = await budi.send("/start")
        assert "Halo, Budi!" in replies[-1].text
        assert "Hubungkan akun KPM" in (await budi.reply_keyboard() or [])
        replies = await nur.send("3204105507850003")  # no longer in the linking flow
        assert "Step 2" not in replies[-1].text and "Step 3" not in replies[-1].text
        siti = SandboxUser(sandbox, client, "siti")
        await siti.send("/start")
        status = (await siti.press("Status bantuan"))[-1].text
        assert "Rp" in status and "Siti A***" in status


async def test_reset_over_the_web_api_tells_open_pages(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    started = asyncio.Event()
    reader = asyncio.create_task(
        _events_until(
            http,
            f"{sandbox.url}/api/events?persona=budi",
            started,
            lambda event: event["type"] == "ready",
        )
    )
    await asyncio.wait_for(started.wait(), 10)
    status, body = await _json(http, "POST", f"{sandbox.url}/api/reset", json={})
    assert status == 200 and body["ok"]
    kinds = [event["type"] for event in await asyncio.wait_for(reader, 15)]
    assert kinds[0] == "reset" and kinds[-1] == "ready"


async def test_persona_setup_problems_are_reported_not_fatal(sessionmaker) -> None:
    problems = await seed_personas(sessionmaker, Hasher(TEST_SECRET.encode()), PERSONAS)
    assert problems == [
        "Siti Aminah: the family is not in the registry",
        "Agus Wijaya: no e-Warong EW-3204-001 in the demo",
        "Dewi Lestari: no partner IPWL-35 in the demo",
    ]
    async with sessionmaker() as session:
        admin = await session.get(Account, 7100004)
        assert admin is not None and [r.role for r in admin.roles] == ["admin"]


# --------------------------------------------------------------------------- binding and the CLI


def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "example.org", "10.0.0.1"):
        assert not is_loopback(host), host


def test_sandbox_refuses_remote_hosts_and_the_production_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(RemoteBindError, match="--allow-remote"):
        Sandbox(host="0.0.0.0", database_url=DEFAULT_SANDBOX_DATABASE)
    Sandbox(host="0.0.0.0", allow_remote=True)  # explicit: allowed
    with pytest.raises(SandboxError, match="production database"):
        Sandbox(database_url=DEFAULT_DATABASE_URL)
    monkeypatch.setenv("DATABASE_URL", _sqlite_url(tmp_path / "prod.db"))
    with pytest.raises(SandboxError, match="production database"):
        Sandbox(database_url=_sqlite_url(tmp_path / "prod.db"))
    with pytest.raises(SandboxError, match="SQLite"):
        Sandbox(database_url="postgresql+asyncpg://localhost/bansos")
    with pytest.raises(SandboxError, match="file"):
        Sandbox(database_url="sqlite+aiosqlite:///:memory:")


def test_cli_refuses_a_non_loopback_host_without_allow_remote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = _sqlite_url(tmp_path / "sandbox.db")
    result = CliRunner().invoke(app, ["sandbox", "--host", "0.0.0.0", "--database", database])
    assert result.exit_code == 2
    assert "--allow-remote" in result.output and "loopback" in result.output
    assert not (tmp_path / "sandbox.db").exists()  # nothing was started


def _children(pid: int) -> list[int]:
    """Ids of the live processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _processes_mentioning(text: str) -> list[int]:
    """Ids of live processes whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class OutputReader:
    """Collects a process's stdout lines in a thread, so waiting never blocks the test."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen = ""
        self._thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, marker: str, seconds: float) -> str:
        """Lines up to the first one containing `marker`; fail after `seconds` or at EOF."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen += line
            if marker in line:
                return self.seen
        raise AssertionError(f"{marker!r} not printed in {seconds}s; output:\n{self.seen}")

    def rest(self, seconds: float = 10) -> str:
        """Everything printed until the process closed its output."""
        self._thread.join(seconds)
        while not self.lines.empty():
            self.seen += self.lines.get_nowait() or ""
        return self.seen


def test_cli_sandbox_serves_until_sigterm_then_exits_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    database = _sqlite_url(tmp_path / "sandbox.db")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "bot", "sandbox", "--port", str(port),
               "--database", database, "--families", str(FAMILIES)]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = OutputReader(process)
    try:
        printed = output.until("Sandbox ready", 90)
        url = f"http://127.0.0.1:{port}"
        assert url in printed and "Siti Aminah" in printed and "Admin Nasional" in printed

        async def probe() -> None:
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/") as response:
                    assert response.status == 200
                status, body = await _json(http, "GET", url + "/api/personas")
                assert status == 200 and len(body["personas"]) == len(PERSONAS)

        asyncio.run(probe())
        assert _children(process.pid) == []  # one process: no helpers to leak
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert "Sandbox stopped." in output.rest()
        assert _port_is_free(port)
        assert _processes_mentioning(str(tmp_path)) == []  # nothing left behind, even orphans
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_download_names_survive_quotes_and_non_ascii() -> None:
    from sandbox.web import _attachment

    header = _attachment('Rekap "Mei"—2026.csv')
    assert header.startswith('attachment; filename="Rekap _Mei__2026.csv"; ')
    assert header.endswith("filename*=UTF-8''Rekap%20%22Mei%22%E2%80%942026.csv")


async def test_napza_request_end_to_end_and_escalation_when_the_clock_passes_the_sla(
    sandbox: Sandbox,
) -> None:
    async with EmulatorClient(sandbox.emulator_url) as client:
        budi = SandboxUser(sandbox, client, "budi")
        dewi = SandboxUser(sandbox, client, "mitra")
        admin = SandboxUser(sandbox, client, "admin")

        async def ask() -> str:
            await budi.send("/napza")
            await budi.press("Lanjutkan")
            await budi.press("Diri sendiri")
            await budi.press("26–40 tahun")
            await budi.press("Konseling")
            await budi.send("surabaya")
            await budi.press("Kota Surabaya")
            await budi.press("Tidak mendesak")
            await budi.press("Lewati")
            text = (await budi.press("Ya, kirim"))[-1].text
            return text.split("Tiket Anda: ")[1].split()[0]

        first = await ask()
        assert first in (await dewi.last()).text
        await dewi.press("Terima")
        assert "IPWL Harapan Jawa Timur" in (await budi.last()).text
        await budi.press("Chat dengan lembaga")
        await budi.send("Terima kasih")
        assert "Terima kasih" in (await dewi.last()).text

        second = await ask()
        assert second in (await dewi.last()).text
        await sandbox.advance_clock(25 * 60)
        alerts = [m.text for m in await admin.messages() if second in m.text]
        assert len(alerts) == 1 and "Tidak ada lembaga mitra yang menjawab" in alerts[0]
        assert "petugas sudah diberi tahu" in (await budi.last()).text


async def test_admin_persona_composes_schedules_and_watches_a_broadcast(
    sandbox: Sandbox,
) -> None:
    """The issue's "done when": in the sandbox the admin composes, previews, schedules
    and sends a broadcast and watches its progress; Siti (linked KPM) receives it."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    async with EmulatorClient(sandbox.emulator_url) as client:
        admin = SandboxUser(sandbox, client, "admin")
        siti = SandboxUser(sandbox, client, "siti")
        before = len(await siti.messages())
        await admin.send("/start")
        await admin.press("Siaran")
        await admin.press("Semua keluarga KPM")
        await admin.press("Seluruh wilayah saya")
        await admin.press("Semua bahasa")
        await admin.send_html("<b>Pencairan BPNT</b> bulan ini mulai tanggal 5")
        preview = await admin.press("Lanjutkan")
        assert "Pencairan BPNT bulan ini mulai tanggal 5" in [m.text for m in preview]
        assert "Penerima saat ini: 1" in preview[-1].text  # Siti is the linked persona
        await admin.press("Jadwalkan")
        when = (sandbox.now() + timedelta(hours=1)).astimezone(ZoneInfo("Asia/Jakarta"))
        scheduled = await admin.send(when.strftime("%d-%m-%Y %H:%M"))
        assert any("WIB" in m.text for m in scheduled)
        progress = next(m for m in await admin.messages() if m.text.startswith("Siaran #"))
        assert "terjadwal" in progress.text and "Jeda" in progress.button_labels
        assert len(await siti.messages()) == before  # not yet
        await sandbox.advance_clock(90)

        async def delivered() -> bool:
            return len(await siti.messages()) > before

        async with asyncio.timeout(20):
            while not await delivered():  # noqa: ASYNC110 (the worker runs in the sandbox)
                await asyncio.sleep(0.1)
        got = (await siti.messages())[-1]
        assert got.text == "Pencairan BPNT bulan ini mulai tanggal 5"
        assert {e["type"] for e in got.entities} == {"bold"}

        async def reported() -> bool:
            view = next(m for m in await admin.messages() if m.text.startswith("Siaran #"))
            return "selesai" in view.text

        async with asyncio.timeout(20):
            while not await reported():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        final = next(m for m in await admin.messages() if m.text.startswith("Siaran #"))
        assert "Terkirim: 1" in final.text and final.inline_buttons == []
