"""The sandbox page in real headless Chromium (Playwright for Python, Debian's chromium).

The sandbox runs in this test's event loop on ephemeral ports with a throwaway
SQLite database; the browser clicks and types like a trainer in front of an
audience. Screenshots go to test-artifacts/. A missing browser fails, never skips.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from sandbox.runner import SANDBOX_TOKEN, Sandbox
from tests.conftest import TEST_SECRET

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
DOCS_SCREENSHOT = PROJECT_ROOT / "docs" / "sandbox.png"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture
def browser_path() -> str:
    path = os.environ.get("SANDBOX_BROWSER", "/usr/bin/chromium")
    if not Path(path).is_file():
        pytest.fail(
            f"Chromium is not installed at {path}. Browser tests need Debian's chromium "
            "(`apt-get install chromium`, as .ci/run does) or SANDBOX_BROWSER pointing at one; "
            "they fail rather than skip."
        )
    return path


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    box = Sandbox(
        port=0,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}",
        families=20,
        secret_key=TEST_SECRET,
    )
    await box.start()
    try:
        yield box
    finally:
        await box.stop()


@pytest.fixture
async def browser(browser_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=browser_path, headless=True, args=BROWSER_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, sandbox: Sandbox) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT, locale="id-ID")
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    try:
        yield opened
    finally:
        await context.close()
    assert problems == []


async def open_sandbox(page: Page, sandbox: Sandbox, left: str, right: str) -> None:
    await page.goto(f"{sandbox.url}/?left={left}&right={right}")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")


def pane(page: Page, side: str) -> Locator:
    return page.locator(f'[data-pane="{side}"]')


def reply_button(chat: Locator, label: str) -> Locator:
    return chat.locator(".reply-keyboard").get_by_role("button", name=label, exact=True)


async def bot_says(chat: Locator, text: str) -> Locator:
    """The newest bot bubble containing `text`, once it is on the page."""
    bubble = chat.locator(".message.incoming .bubble", has_text=text).last
    await expect(bubble).to_be_visible()
    return bubble


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name))


async def test_unlinked_kpm_links_by_typing_and_buttons_then_sees_rupiah(
    page: Page, sandbox: Sandbox
) -> None:
    await open_sandbox(page, sandbox, left="budi", right="siti")
    budi = pane(page, "left")
    await expect(budi.locator(".persona-description")).to_contain_text("belum terhubung")
    await budi.get_by_role("button", name="MULAI").click()
    await bot_says(budi, "Halo, Budi!")
    await reply_button(budi, "Hubungkan akun KPM").click()
    await bot_says(budi, "Langkah 1 dari 3")
    await budi.get_by_role("button", name="Kirim stiker").click()  # the wrong kind of answer
    await budi.get_by_role("button", name="👍").click()
    await expect(budi.locator(".message.outgoing .sticker")).to_have_text("👍")
    asking = budi.locator(".message.incoming", has_text="Bagikan nomor HP saya")
    await expect(asking).to_have_count(2)  # asked again, politely
    # No phone in the registry for Budi: NIK and the activation code from the village office.
    await reply_button(budi, "Saya punya kode aktivasi").click()
    await bot_says(budi, "Langkah 1 dari 2")

    identity = page.locator(".identity", has=page.get_by_text("Budi Santoso", exact=True))
    nik = await identity.locator('[data-field="nik"]').inner_text()
    code = await identity.locator('[data-field="activation_code"]').inner_text()
    assert nik == "3578010903720001" and len(code) == 11 and code[5] == "-"
    field = budi.locator(".composer-input")
    await field.press_sequentially(nik)
    await field.press("Enter")
    await bot_says(budi, "Langkah 2 dari 2")
    await identity.locator('[data-field="activation_code"]').click()  # fills the chat in use
    await expect(field).to_have_value(code)
    await field.press("Enter")
    await bot_says(budi, "Budi S***")

    await reply_button(budi, "Status bantuan").click()
    status = await bot_says(budi, "Saldo saat ini")
    text = await status.inner_text()
    assert "BPNT" in text and "Rp200.000" in text
    await expect(pane(page, "right").locator(".message")).to_have_count(0)  # Siti saw nothing
    await screenshot(page, "sandbox-budi-linked.png")


async def test_linked_kpm_presses_status_and_sees_rupiah_formatted(
    page: Page, sandbox: Sandbox
) -> None:
    await open_sandbox(page, sandbox, left="siti", right="budi")
    siti = pane(page, "left")
    await siti.get_by_role("button", name="MULAI").click()
    await bot_says(siti, "terhubung dengan data KPM Siti A***")
    await reply_button(siti, "Status bantuan").click()
    status = await bot_says(siti, "Saldo saat ini")
    text = await status.inner_text()
    assert "Rp" in text and "************0003" in text and "<b>" not in text
    await expect(status.locator("strong").first).to_be_visible()  # HTML bold, as DOM nodes
    await screenshot(page, "sandbox-siti-status.png")


async def test_two_personas_side_by_side_each_in_their_own_chat(
    page: Page, sandbox: Sandbox
) -> None:
    await open_sandbox(page, sandbox, left="siti", right="budi")
    siti, budi = pane(page, "left"), pane(page, "right")
    await siti.get_by_role("button", name="MULAI").click()
    await budi.get_by_role("button", name="MULAI").click()
    await bot_says(siti, "Halo, Siti!")
    await bot_says(budi, "Halo, Budi!")
    await reply_button(siti, "Status bantuan").click()
    await reply_button(budi, "Hubungkan akun KPM").click()
    status = await bot_says(siti, "Saldo saat ini")
    await bot_says(budi, "Langkah 1 dari 3")
    await expect(siti.locator(".message", has_text="Langkah 1")).to_have_count(0)
    await expect(budi.locator(".message", has_text="Saldo saat ini")).to_have_count(0)
    await expect(reply_button(budi, "Bagikan nomor HP saya")).to_be_visible()

    # The right pane switches to another persona: a different Telegram user.
    await budi.locator(".persona-select").select_option("nur")
    await expect(budi.locator(".empty-chat")).to_be_visible()
    await budi.get_by_role("button", name="MULAI").click()
    await bot_says(budi, "Hello, Nur!")
    await expect(reply_button(budi, "Link KPM account")).to_be_visible()
    assert "right=nur" in page.url
    await status.evaluate("node => node.scrollIntoView({block: 'start'})")  # the PKH amounts
    await screenshot(page, "sandbox-two-panes.png")
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") or not DOCS_SCREENSHOT.exists():
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        await page.screenshot(path=str(DOCS_SCREENSHOT))


async def test_inline_button_edits_the_message_in_place_and_commands_menu_works(
    page: Page, sandbox: Sandbox
) -> None:
    await open_sandbox(page, sandbox, left="budi", right="nur")
    budi, nur = pane(page, "left"), pane(page, "right")
    await budi.get_by_role("button", name="MULAI").click()
    await bot_says(budi, "Halo, Budi!")
    await budi.get_by_role("button", name="Menu").click()
    menu = budi.locator(".commands-menu")
    await expect(menu).to_contain_text("Batalkan yang sedang dilakukan")
    await menu.get_by_role("menuitem", name="/bahasa").click()
    await bot_says(budi, "Pilih bahasa Anda")
    row = budi.locator(".message.incoming", has_text="Pilih bahasa Anda").last
    message_id = await row.get_attribute("data-message-id")
    before = await budi.locator(".message").count()
    await row.get_by_role("button", name="English").click()

    edited = budi.locator(f'.message[data-message-id="{message_id}"]')
    await expect(edited).to_contain_text("Language: English")
    await expect(edited.locator(".edited")).to_be_visible()
    await expect(edited.locator(".inline-button")).to_have_count(0)
    await bot_says(budi, "From now on I will write in English.")
    await expect(budi.locator(".message")).to_have_count(before + 1)  # edited, not re-sent
    await expect(reply_button(budi, "Link KPM account")).to_be_visible()

    # Nur's Telegram is in English: her command menu is in English.
    await nur.get_by_role("button", name="Menu").click()
    await expect(nur.locator(".commands-menu")).to_contain_text("Main menu")
    await screenshot(page, "sandbox-inline-edit.png")


async def test_bot_text_is_rendered_safely_from_entities(page: Page, sandbox: Sandbox) -> None:
    await open_sandbox(page, sandbox, left="siti", right="budi")
    text = 'Tebal <img src=x onerror="window.pwned=1"> rahasia klik kode'
    entities = [
        {"type": "bold", "offset": 0, "length": 5},
        {"type": "spoiler", "offset": text.index("rahasia"), "length": 7},
        {"type": "text_link", "offset": text.index("klik"), "length": 4,
         "url": "javascript:window.pwned=1"},
        {"type": "code", "offset": text.index("kode"), "length": 4},
    ]  # fmt: skip
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.emulator_url}/bot{SANDBOX_TOKEN}/sendMessage"
        body = {"chat_id": 7100001, "text": text, "entities": entities}
        async with http.post(url, json=body) as response:
            assert response.status == 200
    siti = pane(page, "left")
    bubble = await bot_says(siti, "Tebal")
    await expect(bubble.locator("strong")).to_have_text("Tebal")
    await expect(bubble.locator(".spoiler")).to_have_text("rahasia")
    await expect(bubble.locator("code")).to_have_text("kode")
    await expect(bubble.locator("img")).to_have_count(0)
    await expect(bubble.locator("a")).to_have_count(0)  # javascript: links are not links
    await expect(bubble).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert await page.evaluate("window.pwned") is None


async def bot_sends(sandbox: Sandbox, method: str, **params: object) -> None:
    """Make the bot call the Bot API directly (content the handlers do not send yet)."""
    form = aiohttp.FormData()
    for name, value in params.items():
        if isinstance(value, bytes):
            form.add_field(name, value, filename="laporan_mei.csv")
        else:
            form.add_field(name, value if isinstance(value, str) else json.dumps(value))
    async with aiohttp.ClientSession() as http:
        url = f"{sandbox.emulator_url}/bot{SANDBOX_TOKEN}/{method}"
        async with http.post(url, data=form) as response:
            assert response.status == 200, await response.text()


async def test_location_picker_alerts_and_document_downloads(page: Page, sandbox: Sandbox) -> None:
    await open_sandbox(page, sandbox, left="budi", right="siti")
    budi = pane(page, "left")
    keyboard = {"keyboard": [[{"text": "Bagikan lokasi saya", "request_location": True}]]}
    where = {"chat_id": "7100002", "text": "Di mana Anda?", "reply_markup": keyboard}

    await bot_sends(sandbox, "sendMessage", **where)
    await reply_button(budi, "Bagikan lokasi saya").click()
    async with page.expect_response("**/api/chats/budi/messages") as sending:
        await budi.locator(".dialog").get_by_role("button", name="Kota Jayapura").click()
    shared = budi.locator(".message.outgoing .location")
    await expect(shared.last).to_contain_text("-2.5337, 140.7181")
    # Whatever the bot answers to a location, let it finish before the next keyboard.
    await sandbox.wait_handled((await (await sending.value).json())["update_id"])

    await bot_sends(sandbox, "sendMessage", **where)
    await reply_button(budi, "Bagikan lokasi saya").click()
    dialog = budi.locator(".dialog")
    await dialog.get_by_label("Lintang").fill("-6.2")
    await dialog.get_by_label("Bujur").fill("106.8")
    await dialog.get_by_role("button", name="Kirim lokasi").click()
    await expect(shared).to_have_count(2)
    await expect(shared.last).to_contain_text("-6.2, 106.8")

    # A button the bot no longer knows: its answer is an alert in the pane.
    stale = {"inline_keyboard": [[{"text": "Lama", "callback_data": "old:1"}]]}
    await bot_sends(sandbox, "sendMessage", chat_id="7100002", text="Pesan lama",
                    reply_markup=stale)  # fmt: skip
    await budi.get_by_role("button", name="Lama").click()
    await expect(budi.locator(".dialog")).to_contain_text("Tombol ini sudah tidak berlaku.")
    await budi.locator(".dialog").get_by_role("button", name="OK").click()
    await expect(budi.locator(".overlay")).to_be_hidden()

    content = b"tanggal,jumlah\n2026-05-06,200000\n"
    await bot_sends(sandbox, "sendDocument", chat_id="7100002", caption="Laporan", document=content)
    link = budi.locator("a.document")
    await expect(link).to_contain_text("laporan_mei.csv")
    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    assert download.suggested_filename == "laporan_mei.csv"
    saved = await download.path()
    assert saved.read_bytes() == content
    await screenshot(page, "sandbox-location-download.png")


async def test_reset_from_the_page_empties_the_chats(page: Page, sandbox: Sandbox) -> None:
    await open_sandbox(page, sandbox, left="siti", right="budi")
    siti = pane(page, "left")
    await siti.get_by_role("button", name="MULAI").click()
    await bot_says(siti, "Halo, Siti!")
    await page.get_by_role("button", name="EN", exact=True).click()  # the page, not the bot
    await expect(page.locator("#identities h2")).to_have_text("Demo identities")
    assert "lang=en" in page.url
    await page.get_by_role("button", name="Reset demo").click()
    await expect(siti.locator(".dialog")).to_contain_text("Reset the demo?")
    await siti.locator(".dialog").get_by_role("button", name="Reset demo").click()
    await expect(page.locator("#page-toast")).to_contain_text("The demo data is restored.")
    await expect(siti.locator(".empty-chat")).to_be_visible()
    await siti.get_by_role("button", name="START").click()
    await bot_says(siti, "Halo, Siti!")  # the rebuilt bot answers


def inline_button(chat: Locator, label: str) -> Locator:
    """The newest inline button with this label in the chat."""
    return chat.locator(".inline-button", has_text=label).last


async def type_and_send(chat: Locator, text: str) -> None:
    field = chat.locator(".composer-input")
    await field.fill(text)
    await field.press("Enter")


async def test_agent_and_kpm_complete_a_redemption_side_by_side(
    page: Page, sandbox: Sandbox
) -> None:
    await open_sandbox(page, sandbox, left="siti", right="agen")
    siti, agent = pane(page, "left"), pane(page, "right")
    await siti.get_by_role("button", name="MULAI").click()
    await agent.get_by_role("button", name="MULAI").click()
    await bot_says(agent, "Halo, Agus!")

    await reply_button(siti, "Kode belanja").click()
    code_bubble = await bot_says(siti, "Kode belanja Anda")
    code = await code_bubble.locator("b, strong").first.inner_text()
    assert code.replace(" ", "").isdigit() and len(code.replace(" ", "")) == 12

    await reply_button(agent, "Transaksi baru").click()
    await bot_says(agent, "kode belanja")
    await type_and_send(agent, code)
    await bot_says(agent, "Siti A***")
    await inline_button(agent, "Beras").click()
    await bot_says(agent, "Beras: ketik jumlah")
    await type_and_send(agent, "2 x 15000")
    await inline_button(agent, "Telur").click()
    await bot_says(agent, "Telur: ketik jumlah")
    await type_and_send(agent, "30000")
    await bot_says(agent, "Total: Rp60.000")
    await inline_button(agent, "Selesai").click()
    await bot_says(agent, "Periksa sebelum konfirmasi")
    await inline_button(agent, "Konfirmasi").click()
    await bot_says(agent, "Struk #")

    receipt = await bot_says(siti, "Struk #")
    text = await receipt.inner_text()
    assert "Total: Rp60.000" in text and "e-Warong Sri Rejeki" in text
    await expect(inline_button(siti, "Bukan saya / laporkan")).to_be_visible()
    await reply_button(siti, "Status bantuan").click()
    status = await bot_says(siti, "Belanja di e-Warong")
    assert "-Rp60.000" in await status.inner_text()
    await screenshot(page, "sandbox-redemption.png")
