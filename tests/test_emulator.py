"""Tests of the Bot API emulator: conformance with two independent Bot API clients
(python-telegram-bot and aiogram), Telegram's limits, webhooks, and the control client."""

from __future__ import annotations

import asyncio
import warnings
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import telegram
import telegram.error
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from sandbox.client import ChatUser, EmulatorClient
from sandbox.emulator import SECRET_HEADER, BotApiEmulator
from sandbox.html import ParseError, parse_html

TOKEN = "123456:ABC-emulator-test-token"
BOT_ID = 123456
SITI = 1001
BUDI = 1002

# PTB warns about its own retry_after type transition whenever RetryAfter is built.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
async def emulator() -> AsyncIterator[BotApiEmulator]:
    emu = BotApiEmulator(TOKEN)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def client(emulator: BotApiEmulator) -> AsyncIterator[EmulatorClient]:
    async with EmulatorClient(emulator.base_url or "") as control:
        yield control


@pytest.fixture
async def siti(client: EmulatorClient) -> ChatUser:
    return await client.user(SITI, "Siti", phone_number="+6281234567890")


@pytest.fixture
async def ptb(emulator: BotApiEmulator) -> AsyncIterator[telegram.Bot]:
    url = emulator.base_url
    bot = telegram.Bot(TOKEN, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")
    async with bot:
        yield bot


@pytest.fixture
async def aio_bot(emulator: BotApiEmulator) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url or ""))
    bot = Bot(TOKEN, session=session)
    yield bot
    await bot.session.close()


async def user_says(client: EmulatorClient, user_id: int, **body: Any) -> dict[str, Any]:
    """Post a user message without waiting (for tests that poll by hand)."""
    return await client.request("POST", f"/users/{user_id}/messages", json=body)


def retry_after_seconds(exc: telegram.error.RetryAfter) -> int:
    """Read PTB's retry_after as whole seconds across its int/timedelta transition."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = exc.retry_after
    return int(value.total_seconds()) if hasattr(value, "total_seconds") else int(value)


# --------------------------------------------------------------------------- HTML parse mode


@pytest.mark.parametrize(
    ("source", "text", "entities"),
    [
        ("<b>Halo</b> &amp; &lt;x&gt;", "Halo & <x>", [("bold", 0, 4)]),
        ("😀 <i>x</i>", "😀 x", [("italic", 3, 1)]),
        ("<STRONG>a</STRONG><em>b</em><ins>c</ins><del>d</del>", "abcd", None),
        ('<a href="https://a.id/?x=1&amp;y=2">l</a>', "l", [("text_link", 0, 1)]),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>', "st", None),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍", None),
        ("&#72;&#x69; a > b", "Hi a > b", []),
    ],
)
def test_html_parser_accepts_telegram_html(
    source: str, text: str, entities: list[tuple[str, int, int]] | None
) -> None:
    plain, found = parse_html(source)
    assert plain == text
    if entities is not None:
        assert [(e["type"], e["offset"], e["length"]) for e in found] == entities


def test_html_parser_keeps_link_and_language_details() -> None:
    _, (link,) = parse_html('<a href="https://a.id/?x=1&amp;y=2">l</a>')
    assert link["url"] == "https://a.id/?x=1&y=2"
    _, (pre,) = parse_html('<pre><code class="language-python">x</code></pre>')
    assert pre["language"] == "python"


@pytest.mark.parametrize(
    "source",
    [
        "<foo>x</foo>",
        "<b>x",
        "<b>x</i>",
        "x</b>",
        "a < b",
        "a & b",
        "&nbsp;",
        '<b class="x">y</b>',
        "<span>x</span>",
        "<br>",
        "<tg-emoji>x</tg-emoji>",
    ],
)
def test_html_parser_rejects_what_telegram_rejects(source: str) -> None:
    with pytest.raises(ParseError):
        parse_html(source)


# --------------------------------------------------------------------------- raw HTTP


async def test_raw_http_auth_methods_and_transports(emulator: BotApiEmulator) -> None:
    url = emulator.base_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/bot999:WRONG/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with http.get(f"{url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found: method not found"
        async with http.get(f"{url}/bot{TOKEN}/GETME") as resp:
            body = await resp.json()
            assert body["ok"] and body["result"]["id"] == BOT_ID
        async with http.post(f"{url}/control/users", json={"id": SITI, "first_name": "Siti"}):
            pass
        two_actions = {
            "inline_keyboard": [[{"text": "x", "callback_data": "a", "url": "https://a.id"}]]
        }
        no_action = {"inline_keyboard": [[{"text": "x"}]]}
        empty_data = {"inline_keyboard": [[{"text": "x", "callback_data": ""}]]}
        for markup in (two_actions, no_action):
            payload = {"chat_id": SITI, "text": "hi", "reply_markup": markup}
            async with http.post(f"{url}/bot{TOKEN}/sendMessage", json=payload) as resp:
                body = await resp.json()
                assert resp.status == 400
                assert body["description"].startswith(
                    "Bad Request: can't parse inline keyboard button:"
                )
        payload = {"chat_id": SITI, "text": "hi", "reply_markup": empty_data}
        async with http.post(f"{url}/bot{TOKEN}/sendMessage", json=payload) as resp:
            assert (await resp.json())["description"] == "Bad Request: BUTTON_DATA_INVALID"
        form = {"chat_id": str(SITI), "text": "form", "reply_markup": '{"remove_keyboard": true}'}
        async with http.post(f"{url}/bot{TOKEN}/sendMessage", data=form) as resp:
            assert (await resp.json())["result"]["text"] == "form"
        async with http.get(f"{url}/bot{TOKEN}/sendMessage", params={"chat_id": SITI}) as resp:
            assert (await resp.json())["description"] == "Bad Request: message text is empty"


# --------------------------------------------------------------------------- python-telegram-bot


async def test_ptb_get_me_and_send_html_with_inline_keyboard(
    ptb: telegram.Bot, siti: ChatUser
) -> None:
    me = await ptb.get_me()
    assert (me.id, me.is_bot, me.username) == (BOT_ID, True, "bansos_test_bot")

    html = "<b>Halo</b> Siti &amp; 😀 <i>x</i>"
    keyboard = telegram.InlineKeyboardMarkup(
        [
            [
                telegram.InlineKeyboardButton("Ya", callback_data="yes"),
                telegram.InlineKeyboardButton("Situs", url="https://kemensos.go.id"),
            ]
        ]
    )
    msg = await ptb.send_message(SITI, html, parse_mode="HTML", reply_markup=keyboard)
    assert msg.text == "Halo Siti & 😀 x"
    assert msg.from_user.id == BOT_ID and msg.chat.id == SITI and msg.chat.type == "private"
    assert [(e.type, e.offset, e.length) for e in msg.entities] == [
        ("bold", 0, 4),
        ("italic", 15, 1),
    ]
    assert msg.reply_markup.inline_keyboard[0][0].callback_data == "yes"

    last = await siti.last()
    assert (last.message_id, last.text, last.html, last.kind) == (
        msg.message_id,
        msg.text,
        html,
        "text",
    )
    assert last.button("Ya")["callback_data"] == "yes"
    assert last.button("itu")["url"] == "https://kemensos.go.id"
    with pytest.raises(AssertionError, match="Situs"):
        last.button("Tidak ada")


async def test_ptb_edits_and_deletes(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("A", callback_data="a")]]
    )
    msg = await ptb.send_message(SITI, "satu", reply_markup=keyboard)
    edited = await ptb.edit_message_text("dua", chat_id=SITI, message_id=msg.message_id)
    assert edited.text == "dua" and edited.edit_date is not None
    assert edited.reply_markup is None  # editing text without markup drops the keyboard
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is not modified"):
        await ptb.edit_message_text("dua", chat_id=SITI, message_id=msg.message_id)
    new_keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("B", callback_data="b")]]
    )
    edited = await ptb.edit_message_reply_markup(SITI, msg.message_id, reply_markup=new_keyboard)
    assert edited.reply_markup.inline_keyboard[0][0].callback_data == "b"
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message to edit not found"):
        await ptb.edit_message_text("x", chat_id=SITI, message_id=999)

    sent = await user_says(client, SITI, text="pesan saya")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message can't be edited"):
        await ptb.edit_message_text("x", chat_id=SITI, message_id=sent["message_id"])

    assert await ptb.delete_message(SITI, msg.message_id) is True
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message to delete not found"):
        await ptb.delete_message(SITI, msg.message_id)
    assert await siti.messages() == []
    (gone,) = await siti.messages(include_deleted=True)
    assert gone.deleted and gone.edited and gone.text == "dua"


async def test_ptb_documents_photos_and_file_download(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    data = b"nik,nama\n3204105507850003,Siti\n"
    msg = await ptb.send_document(
        SITI, data, filename="ekspor.csv", caption="<b>Ekspor</b>", parse_mode="HTML"
    )
    assert msg.document.file_name == "ekspor.csv" and msg.document.mime_type == "text/csv"
    assert msg.caption == "Ekspor" and msg.caption_entities[0].type == "bold"
    file = await ptb.get_file(msg.document.file_id)
    assert bytes(await file.download_as_bytearray()) == data
    assert await client.file(msg.document.file_id) == data

    again = await ptb.send_document(SITI, msg.document.file_id)
    assert again.document.file_id == msg.document.file_id
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)caption is too long"):
        await ptb.send_document(SITI, data, filename="x.csv", caption="x" * 1025)

    photo = await ptb.send_photo(SITI, b"\xff\xd8\xff fake jpeg", caption="foto")
    assert len(photo.photo) == 3 and photo.photo[-1].width == 800

    last = await siti.last()
    assert last.kind == "photo" and last.text == "foto"
    doc = (await siti.messages())[0]
    assert doc.document == {
        "file_name": "ekspor.csv",
        "mime_type": "text/csv",
        "file_id": msg.document.file_id,
        "size": len(data),
    }


async def test_ptb_location_venue_contact_and_chat_action(
    ptb: telegram.Bot, siti: ChatUser
) -> None:
    loc = await ptb.send_location(SITI, latitude=-6.2, longitude=106.8)
    assert (loc.location.latitude, loc.location.longitude) == (-6.2, 106.8)
    venue = await ptb.send_venue(SITI, -6.9, 107.6, title="e-Warong Mawar", address="Jl. Merdeka 1")
    assert venue.venue.title == "e-Warong Mawar" and venue.location.latitude == -6.9
    contact = await ptb.send_contact(SITI, phone_number="112", first_name="Darurat")
    assert contact.contact.phone_number == "112"
    assert await ptb.send_chat_action(SITI, "typing") is True
    with pytest.raises(telegram.error.BadRequest):
        await ptb.send_chat_action(SITI, "dancing")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)latitude"):
        await ptb.send_location(SITI, latitude=91, longitude=0)
    kinds = [m.kind for m in await siti.messages()]
    assert kinds == ["location", "venue", "contact"]
    assert (await siti.messages())[1].venue["address"] == "Jl. Merdeka 1"


async def test_ptb_commands_per_scope_and_language(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    general = [telegram.BotCommand("start", "Mulai"), telegram.BotCommand("bantuan", "Bantuan")]
    english = [telegram.BotCommand("start", "Start")]
    mine = [telegram.BotCommand("agen", "Menu agen")]
    chat_scope = telegram.BotCommandScopeChat(SITI)
    assert await ptb.set_my_commands(general, language_code="id")
    assert await ptb.set_my_commands(english, language_code="en")
    assert await ptb.set_my_commands(mine, scope=chat_scope)
    assert [c.command for c in await ptb.get_my_commands(language_code="id")] == [
        "start",
        "bantuan",
    ]
    assert [c.command for c in await ptb.get_my_commands(scope=chat_scope)] == ["agen"]
    assert await ptb.get_my_commands() == ()
    assert len(await client.commands()) == 3
    assert [c["command"] for c in await siti.commands()] == ["agen"]
    assert await ptb.delete_my_commands(scope=chat_scope)
    assert [c["command"] for c in await siti.commands()] == ["start", "bantuan"]
    with pytest.raises(telegram.error.BadRequest):
        await ptb.set_my_commands([telegram.BotCommand("Bad-Command", "x")])


async def test_ptb_get_updates_and_callback_answers(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    keyboard = telegram.InlineKeyboardMarkup(
        [[telegram.InlineKeyboardButton("Ya", callback_data="yes")]]
    )
    bot_msg = await ptb.send_message(SITI, "Setuju?", reply_markup=keyboard)
    first = await user_says(client, SITI, text="/start promo")
    await user_says(client, SITI, contact={"phone_number": "+6281234567890", "user_id": SITI})
    await user_says(client, SITI, location={"latitude": -6.2, "longitude": 106.8})
    pressed = await client.request(
        "POST", f"/users/{SITI}/callbacks", json={"message_id": bot_msg.message_id, "data": "yes"}
    )

    updates = await ptb.get_updates(timeout=0)
    assert [u.update_id for u in updates] == list(range(first["update_id"], first["update_id"] + 4))
    start, contact, location, callback = updates
    assert start.message.text == "/start promo" and start.message.from_user.id == SITI
    assert [(e.type, e.offset, e.length) for e in start.message.entities] == [("bot_command", 0, 6)]
    assert contact.message.contact.user_id == SITI
    assert location.message.location.latitude == -6.2
    query = callback.callback_query
    assert (query.data, query.from_user.id, query.message.message_id) == (
        "yes",
        SITI,
        bot_msg.message_id,
    )
    assert query.id == pressed["callback_query_id"]

    assert await ptb.answer_callback_query(query.id, text="Tersimpan", show_alert=True)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
        await ptb.answer_callback_query(query.id, text="lagi")
    (answer,) = await siti.callback_answers()
    assert (answer["text"], answer["show_alert"]) == ("Tersimpan", True)
    events = await client.events(chat_id=SITI)
    answers = [e for e in events if e["method"] == "answerCallbackQuery" and e["ok"]]
    assert answers[0]["params"]["text"] == "Tersimpan"

    # Confirming with the next offset lets /control/wait return.
    await ptb.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    await client.wait(updates[-1].update_id, seconds=1)

    # Long polling wakes up as soon as an update arrives.
    poll = asyncio.create_task(ptb.get_updates(offset=updates[-1].update_id + 1, timeout=5))
    await asyncio.sleep(0.05)
    await user_says(client, SITI, text="halo")
    (late,) = await asyncio.wait_for(poll, 2)
    assert late.message.text == "halo"


async def test_ptb_parses_user_media_and_downloads_user_documents(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    csv = "nik,nama\n3204105507850003,Siti\n"
    await user_says(client, SITI, document={"file_name": "kpm.csv", "content": csv})
    await user_says(client, SITI, sticker={})
    await user_says(client, SITI, photo={"caption": "KKS saya"})
    await user_says(client, SITI, voice={})
    document, sticker, photo, voice = await ptb.get_updates(timeout=0)
    assert document.message.document.file_name == "kpm.csv"
    assert document.message.document.mime_type == "text/csv"
    file = await ptb.get_file(document.message.document.file_id)
    assert (await file.download_as_bytearray()).decode() == csv
    assert sticker.message.sticker.emoji == "👍" and sticker.message.sticker.type == "regular"
    assert len(photo.message.photo) == 3 and photo.message.caption == "KKS saya"
    assert voice.message.voice.duration == 2 and voice.message.voice.mime_type == "audio/ogg"


async def test_default_limits_let_a_conversation_through_but_stop_a_spam_loop(
    ptb: telegram.Bot, siti: ChatUser
) -> None:
    for step in range(20):
        await ptb.send_message(SITI, f"langkah {step}")
    with pytest.raises(telegram.error.RetryAfter):
        for _ in range(100):
            await ptb.send_message(SITI, "spam")


async def test_answer_callback_query_limits(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    msg = await ptb.send_message(SITI, "x")
    path = f"/users/{SITI}/callbacks"
    fresh = await client.request("POST", path, json={"message_id": msg.message_id, "data": "d"})
    old = await client.request("POST", path, json={"message_id": msg.message_id, "age": 901})
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message_too_long"):
        await ptb.answer_callback_query(fresh["callback_query_id"], text="x" * 201)
    assert await ptb.answer_callback_query(fresh["callback_query_id"], text="x" * 200)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query is too old"):
        await ptb.answer_callback_query(old["callback_query_id"])
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)query id is invalid"):
        await ptb.answer_callback_query("123")


async def test_duplicate_update_is_delivered_again(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    sent = await user_says(client, SITI, text="sekali")
    (update,) = await ptb.get_updates(timeout=0)
    await ptb.get_updates(offset=update.update_id + 1, timeout=0)
    replayed = update.to_dict()
    assert await client.inject(replayed, wait=False) == sent["update_id"]
    (again,) = await ptb.get_updates(offset=update.update_id + 1, timeout=0)
    assert again.update_id == update.update_id and again.message.text == "sekali"
    assert await ptb.get_updates(offset=update.update_id + 1, timeout=0) == ()
    await client.wait(update.update_id, seconds=1)
    fresh_id = await client.inject({"message": replayed["message"]}, wait=False)
    assert fresh_id == update.update_id + 1


async def test_ptb_copy_message(ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser) -> None:
    budi = await client.user(BUDI, "Budi", language_code="en")
    sent = await user_says(client, SITI, text="tolong diteruskan")
    copied = await ptb.copy_message(BUDI, from_chat_id=SITI, message_id=sent["message_id"])
    assert isinstance(copied, telegram.MessageId)
    last = await budi.last()
    assert (last.message_id, last.text) == (copied.message_id, "tolong diteruskan")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message to copy not found"):
        await ptb.copy_message(BUDI, from_chat_id=SITI, message_id=999)


async def test_ptb_bad_requests(ptb: telegram.Bot, siti: ChatUser) -> None:
    await ptb.send_message(SITI, "x" * 4096)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is too long"):
        await ptb.send_message(SITI, "x" * 4097)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message is too long"):
        await ptb.send_message(SITI, "😀" * 2049)  # 4098 UTF-16 code units
    await ptb.send_message(SITI, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)can't parse entities"):
        await ptb.send_message(SITI, "<b>tebal", parse_mode="HTML")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message text is empty"):
        await ptb.send_message(SITI, "   ")
    button = telegram.InlineKeyboardButton("x", callback_data="d" * 65)
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)button_data_invalid"):
        await ptb.send_message(SITI, "x", reply_markup=telegram.InlineKeyboardMarkup([[button]]))
    utf8_64 = "é" * 32  # 64 bytes in UTF-8
    button = telegram.InlineKeyboardButton("x", callback_data=utf8_64)
    await ptb.send_message(SITI, "x", reply_markup=telegram.InlineKeyboardMarkup([[button]]))
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)chat not found"):
        await ptb.send_message(4242, "halo")


async def test_ptb_rate_limits_and_faults(
    ptb: telegram.Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    await client.user(BUDI, "Budi")
    await client.set_limits(per_chat_rate=0.5, per_chat_burst=3)
    for _ in range(3):
        await ptb.send_message(SITI, "x")
    with pytest.raises(telegram.error.RetryAfter) as caught:
        await ptb.send_message(SITI, "x")
    assert retry_after_seconds(caught.value) == 2
    await ptb.send_message(BUDI, "other chats are not affected")

    await client.set_limits(per_chat_rate=None, global_rate=1, global_burst=2)
    await ptb.send_message(SITI, "1")
    await ptb.send_message(BUDI, "2")
    with pytest.raises(telegram.error.RetryAfter) as caught:
        await ptb.send_message(SITI, "3")
    assert retry_after_seconds(caught.value) == 1
    await client.set_limits(enabled=False)
    for _ in range(5):
        await ptb.send_message(SITI, "unlimited")

    await client.faults(429, retry_after=7, count=1)
    with pytest.raises(telegram.error.RetryAfter) as caught:
        await ptb.send_message(SITI, "x")
    assert retry_after_seconds(caught.value) == 7
    await ptb.send_message(SITI, "fault used up")
    await client.faults(502, count=1, methods=["sendMessage"])
    await ptb.get_me()  # other methods are unaffected
    with pytest.raises(telegram.error.NetworkError):
        await ptb.send_message(SITI, "x")
    rules = await client.faults(503, seconds=60)
    assert rules[0]["status"] == 503
    assert await client.faults(clear=True) == []
    events = await client.events()
    assert {e["error_code"] for e in events if not e["ok"]} == {429, 502}


async def test_ptb_forbidden_when_blocked(ptb: telegram.Bot, siti: ChatUser) -> None:
    await siti.block()
    with pytest.raises(telegram.error.Forbidden, match=r"(?i)blocked by the user"):
        await ptb.send_message(SITI, "halo")
    await siti.block(False)
    await ptb.send_message(SITI, "halo")


# --------------------------------------------------------------------------- webhooks


class Receiver:
    """A tiny webhook endpoint recording deliveries and answering from a script."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.secrets: list[str | None] = []
        self.script: deque[tuple[int, dict[str, Any] | None]] = deque()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.secrets.append(request.headers.get(SECRET_HEADER))
        self.updates.append(await request.json())
        status, body = self.script.popleft() if self.script else (200, None)
        if body is not None:
            return web.json_response(body, status=status)
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield rec
    await runner.cleanup()


async def test_webhook_delivery_retry_and_reply(
    ptb: telegram.Bot, receiver: Receiver, siti: ChatUser
) -> None:
    assert await ptb.set_webhook(receiver.url, secret_token="s3cret_token")
    info = await ptb.get_webhook_info()
    assert (info.url, info.pending_update_count) == (receiver.url, 0)
    with pytest.raises(telegram.error.Conflict):
        await ptb.get_updates()

    assert await siti.send("halo") == []
    assert receiver.updates[-1]["message"]["text"] == "halo"
    assert receiver.secrets == ["s3cret_token"]

    receiver.script.append((500, None))
    await siti.send("lagi")
    assert [u["message"]["text"] for u in receiver.updates[-2:]] == ["lagi", "lagi"]
    info = await ptb.get_webhook_info()
    assert "500" in info.last_error_message

    receiver.script.append((200, {"method": "sendMessage", "chat_id": SITI, "text": "balas"}))
    (reply,) = await siti.send("tanya")
    assert reply.text == "balas"

    assert await ptb.delete_webhook()
    assert (await ptb.get_webhook_info()).url == ""
    assert await ptb.get_updates(timeout=0) == ()


async def test_aiogram_webhook_handler_with_secret_and_multipart_reply(
    aio_bot: Bot, siti: ChatUser
) -> None:
    dp = Dispatcher()

    @dp.message(F.text)
    async def echo(message: Message) -> Any:
        return message.answer(f"webhook: <b>{message.text}</b>", parse_mode="HTML")

    app = web.Application()
    SimpleRequestHandler(dp, aio_bot, handle_in_background=False, secret_token="tok").register(
        app, path="/tg"
    )
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
        await aio_bot.set_webhook(url, secret_token="tok")
        (reply,) = await siti.send("halo")
        assert (reply.text, reply.html) == ("webhook: halo", "webhook: <b>halo</b>")
    finally:
        await runner.cleanup()


# --------------------------------------------------------------------------- aiogram


async def test_aiogram_document_and_reply_keyboards(
    aio_bot: Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    data = b"kode,jumlah\nEW-1,200000\n"
    msg = await aio_bot.send_document(
        SITI, BufferedInputFile(data, filename="transaksi.csv"), caption="Transaksi hari ini"
    )
    assert msg.document and msg.document.file_name == "transaksi.csv"
    assert await client.file(msg.document.file_id) == data
    downloaded = await aio_bot.download(msg.document.file_id)
    assert downloaded is not None and downloaded.read() == data

    keyboard = ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text="Bagikan nomor", request_contact=True)],
            [
                KeyboardButton(text="Lokasi saya", request_location=True),
                KeyboardButton(text="Batal"),
            ],
        ],
        resize_keyboard=True,
    )
    sent = await aio_bot.send_message(SITI, "Bagikan nomor HP Anda", reply_markup=keyboard)
    assert sent.reply_markup is None  # Telegram only echoes inline keyboards
    assert await siti.reply_keyboard() == ["Bagikan nomor", "Lokasi saya", "Batal"]
    assert (await siti.last()).reply_markup["keyboard"][0][0]["request_contact"] is True
    await aio_bot.send_message(SITI, "Terima kasih", reply_markup=ReplyKeyboardRemove())
    assert await siti.reply_keyboard() is None

    too_long = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="y" * 65)]]
    )
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await aio_bot.send_message(SITI, "x", reply_markup=too_long)


def build_dispatcher() -> Dispatcher:
    """A small bot exercising text, contact, location, stickers, edits and callbacks."""
    dp = Dispatcher()

    @dp.message(F.text == "/menu")
    async def menu(message: Message) -> None:
        keyboard = ReplyKeyboardMarkup(
            keyboard=[
                [KeyboardButton(text="Bagikan nomor", request_contact=True)],
                [
                    KeyboardButton(text="Lokasi", request_location=True),
                    KeyboardButton(text="Bantuan"),
                ],
            ]
        )
        await message.answer("Menu", reply_markup=keyboard)

    @dp.message(F.contact)
    async def contact(message: Message) -> None:
        own = message.contact.user_id == message.from_user.id
        await message.answer(f"Nomor {message.contact.phone_number} milik sendiri: {own}")

    @dp.message(F.location)
    async def location(message: Message) -> None:
        await message.answer(f"Lokasi {message.location.latitude}")

    @dp.message(F.sticker)
    async def sticker(message: Message) -> None:
        await message.answer("Maaf, kirim teks.")

    @dp.message(F.text)
    async def echo(message: Message) -> None:
        keyboard = InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    InlineKeyboardButton(text="Ya", callback_data="pilih:ya"),
                    InlineKeyboardButton(text="Tidak", callback_data="pilih:tidak"),
                ]
            ]
        )
        await message.answer(message.text, reply_markup=keyboard)

    @dp.edited_message(F.text)
    async def edited(message: Message) -> None:
        await message.answer(f"Diubah: {message.text}")

    @dp.callback_query()
    async def chosen(query: CallbackQuery) -> None:
        await query.message.edit_text(f"Dipilih: {query.data}")
        await query.answer("ok")

    return dp


async def test_aiogram_polling_with_chat_user(
    aio_bot: Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    dp = build_dispatcher()
    polling = asyncio.create_task(
        dp.start_polling(aio_bot, handle_as_tasks=False, handle_signals=False, polling_timeout=1)
    )
    try:
        since = await client.last_seq()
        (echo,) = await siti.send("halo")
        assert (echo.text, echo.edited) == ("halo", False)
        assert [b["text"] for row in echo.inline_buttons for b in row] == ["Ya", "Tidak"]

        (changed,) = await siti.press("Ya")
        assert (changed.message_id, changed.text, changed.edited) == (
            echo.message_id,
            "Dipilih: pilih:ya",
            True,
        )
        assert changed.inline_buttons == []
        assert (await siti.callback_answers())[-1]["text"] == "ok"
        (forged,) = await siti.callback(echo.message_id, "pilih:palsu")
        assert forged.text == "Dipilih: pilih:palsu"
        with pytest.raises(AssertionError, match="Tidak"):
            await siti.press("Tidak")  # the keyboard was removed by the edit

        await siti.send("/menu")
        assert await siti.reply_keyboard() == ["Bagikan nomor", "Lokasi", "Bantuan"]
        (shared,) = await siti.press("Bagikan nomor")
        assert shared.text == "Nomor +6281234567890 milik sendiri: True"
        (other,) = await siti.share_contact("+628111", own=False)
        assert other.text.endswith("milik sendiri: False")
        with pytest.raises(AssertionError, match="location"):
            await siti.press("Lokasi")
        (where,) = await siti.press("Lokasi", location=(-6.2, 106.8))
        assert where.text == "Lokasi -6.2"
        (helped,) = await siti.press("Bantuan")
        assert helped.text == "Bantuan"
        (sticker_reply,) = await siti.send_sticker()
        assert sticker_reply.text == "Maaf, kirim teks."
        user_msg_id = helped.message_id - 1
        (after_edit,) = await siti.edit(user_msg_id, "Bantuan dong")
        assert after_edit.text == "Diubah: Bantuan dong"
        with pytest.raises(AssertionError, match="Bantuan"):
            await siti.press("Nggak ada")

        methods = [e["method"] for e in await client.events(since=since, chat_id=SITI)]
        assert methods[:3] == ["sendMessage", "editMessageText", "answerCallbackQuery"]
        assert all(e["ok"] for e in await client.events(since=since))
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_deleted_messages_are_reported_as_changes(
    aio_bot: Bot, client: EmulatorClient, siti: ChatUser
) -> None:
    dp = Dispatcher()

    @dp.message(F.text)
    async def replace(message: Message) -> None:
        await message.delete()
        await message.answer("diganti")

    polling = asyncio.create_task(
        dp.start_polling(aio_bot, handle_as_tasks=False, handle_signals=False, polling_timeout=1)
    )
    try:
        sent = await siti.send("rahasia")
        assert [m.text for m in sent] == ["diganti"]
        view = await client.chat(SITI)
        assert view["messages"][0]["deleted"] and not view["messages"][0]["from_bot"]
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 5)


async def test_control_api_errors_and_reset(client: EmulatorClient, siti: ChatUser) -> None:
    with pytest.raises(Exception, match="unknown user"):
        await client.request("POST", "/users/777/messages", json={"text": "x"})
    with pytest.raises(Exception, match="exactly one"):
        await client.request("POST", f"/users/{SITI}/messages", json={"text": "x", "sticker": {}})
    with pytest.raises(AssertionError, match="not confirmed"):
        sent = await user_says(client, SITI, text="nobody polls")
        await client.wait(sent["update_id"], seconds=0.05)
    await client.reset()
    with pytest.raises(Exception, match="unknown chat"):
        await client.chat(SITI)


async def test_ptb_message_reactions_as_telegram_allows_a_bot(
    ptb: telegram.Bot, siti: ChatUser
) -> None:
    """setMessageReaction: one emoji of Telegram's list on a message of the chat; more than
    one, another kind, or an unknown message is refused as Telegram refuses it."""
    sent = await ptb.send_message(SITI, "Halo")
    assert await ptb.set_message_reaction(SITI, sent.message_id, "👍") is True
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)reaction_invalid"):
        await ptb.set_message_reaction(SITI, sent.message_id, "🦄")
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)reactions_too_many"):
        await ptb.set_message_reaction(SITI, sent.message_id, ["👍", "🔥"])
    with pytest.raises(telegram.error.BadRequest, match=r"(?i)message to react not found"):
        await ptb.set_message_reaction(SITI, 999_999, "👍")
    assert await ptb.set_message_reaction(SITI, sent.message_id, []) is True
