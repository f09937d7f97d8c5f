"""Admins compose, preview, schedule and control broadcasts in chat; the worker's engine
delivers them with copyMessage. Everything goes through the real dispatcher and the Bot
API emulator; the engine runs against the same emulator."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from models import Broadcast
from services import accounts
from services.audit import recent
from services.broadcasts.engine import BroadcastEngine
from tests.support.broadcast import Group, add_emulator_users, populate


async def deliver(app) -> None:
    """What the worker does: deliver every broadcast that is due, then stop."""
    from bot.worker import make_broadcast_engine

    engine: BroadcastEngine = make_broadcast_engine(
        app.ctx.sessionmaker, app.ctx.settings, app.bot, app.dp.workflow_data["i18n"], app.ctx.now
    )
    try:
        await engine.run_until_idle()
    finally:
        await engine.close()


BANDUNG = Group(first_id=500_001, count=6, village_prefix="32.04")
BANDUNG_EN = Group(first_id=500_101, count=2, village_prefix="32.04", locale="en")
BANDUNG_BPNT_ONLY = Group(first_id=500_201, count=3, village_prefix="32.04", pkh=False)
BANDUNG_OPTED_OUT = Group(first_id=500_301, count=2, village_prefix="32.04", broadcasts_off=True)
MAKASSAR = Group(first_id=500_401, count=4, village_prefix="73.71")
ALL = (BANDUNG, BANDUNG_EN, BANDUNG_BPNT_ONLY, BANDUNG_OPTED_OUT, MAKASSAR)


async def _world(app, sessionmaker, scope: str | None = None):
    await populate(sessionmaker, *ALL)
    await add_emulator_users(app.client, *ALL)
    admin = await app.user("Admin", language_code="en")
    async with sessionmaker() as session, session.begin():
        if scope is None:
            await accounts.ensure_national_admins(session, [admin.id])
        else:
            await accounts.grant_admin(session, admin.id, scope, actor=None)
    await admin.send("/start")
    return admin


async def _received(app, group: Group) -> list[list[dict]]:
    """The bot messages each member of the group got, as raw views."""
    chats = [await app.client.chat(tid) for tid in group.ids]
    return [[m for m in chat["messages"] if m["from_bot"]] for chat in chats]


async def test_admin_composes_previews_and_sends_a_formatted_pkh_broadcast(
    bot_app, sessionmaker
) -> None:
    app = bot_app
    admin = await _world(app, sessionmaker)
    assert "Broadcast" in (await admin.reply_keyboard() or [])
    await admin.press("Broadcast")
    region_asked = await admin.press("PKH families")
    assert "to reach the whole country." in region_asked[-1].text  # not "all of the whole…"
    asked = await admin.send("32.04")
    assert "language" in asked[-1].text
    await admin.press("Every language")
    await admin.send_html("<b>Pencairan PKH</b> tahap 4 mulai <i>1 Desember</i>")
    await admin.press("Add a version in English")
    await admin.send_html("<b>PKH payout</b> stage 4 starts <i>1 December</i>")
    preview = await admin.press("Continue")
    texts = [m.text for m in preview]
    # the preview is the message itself, formatting included, then the count
    assert "Pencairan PKH tahap 4 mulai 1 Desember" in texts
    assert "PKH payout stage 4 starts 1 December" in texts
    copied = next(m for m in preview if m.text.startswith("Pencairan"))
    assert {e["type"] for e in copied.entities} == {"bold", "italic"}
    # PKH in 32.04: 6 + 2 English; BPNT-only, opted-out and Makassar are not counted
    assert "Recipients now: 8" in texts[-1]
    progress = await admin.press("Send now")
    assert any("Broadcast #" in m.text and "scheduled" in m.text for m in progress)

    await deliver(app)

    for messages in await _received(app, BANDUNG):
        assert [m["text"] for m in messages] == ["Pencairan PKH tahap 4 mulai 1 Desember"]
        assert {e["type"] for e in messages[0]["entities"]} == {"bold", "italic"}
    for messages in await _received(app, BANDUNG_EN):
        assert [m["text"] for m in messages] == ["PKH payout stage 4 starts 1 December"]
    for group in (BANDUNG_BPNT_ONLY, BANDUNG_OPTED_OUT, MAKASSAR):
        assert all(messages == [] for messages in await _received(app, group))
    # the progress message was edited into the final report, and a notice followed
    view = await admin.messages()
    report = next(m for m in view if m.text.startswith("Broadcast #"))
    assert "finished" in report.text and "Sent: 8" in report.text and report.edited
    assert report.inline_buttons == []
    assert "8 of 8 delivered" in view[-1].text
    async with sessionmaker() as session:
        actions = [event.action for event in await recent(session, action_prefix="broadcast.")]
    assert actions[::-1] == ["broadcast.created", "broadcast.started", "broadcast.done"]


async def test_photo_broadcast_scheduled_in_the_admins_zone_then_paused_and_cancelled(
    bot_app, sessionmaker
) -> None:
    app = bot_app
    admin = await _world(app, sessionmaker, scope="73")  # Sulawesi Selatan: WITA
    await admin.press("Broadcast")
    region_asked = await admin.press("All KPM families")
    assert "to reach all of Sulawesi Selatan." in region_asked[-1].text
    await admin.press("All of my area")
    await admin.press("Bahasa Indonesia")
    refused = await admin.send_sticker()
    assert "text, a photo or a document" in refused[-1].text
    preview = await admin.send_photo(caption="Jadwal e-Warong baru")
    assert preview[1].kind == "photo" and preview[1].text == "Jadwal e-Warong baru"
    assert "Recipients now: 4" in preview[-1].text  # Makassar only, Indonesian readers
    await admin.press("Schedule")
    wrong = await admin.send("besok pagi")
    assert "like 28-11-2026 08:00" in wrong[-1].text
    past = await admin.send("01-01-2020 08:00")
    assert "in the future" in past[-1].text
    now = app.ctx.now()
    when = now + timedelta(days=2)
    local = when.astimezone(ZoneInfo("Asia/Makassar"))
    stored = await admin.send(local.strftime("%d-%m-%Y %H:%M"))
    assert any("WITA" in m.text for m in stored)
    async with sessionmaker() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None and broadcast.status == "scheduled"
    assert abs(broadcast.scheduled_at - when.replace(second=0, microsecond=0)) < timedelta(
        minutes=1
    )
    # not due yet: the engine sends nothing
    await deliver(app)
    assert all(messages == [] for messages in await _received(app, MAKASSAR))
    await admin.press("Pause")
    paused = next(m for m in await admin.messages() if m.text.startswith("Broadcast #"))
    assert "paused" in paused.text and "Resume" in paused.button_labels
    await admin.press("Resume")
    await admin.press("Cancel broadcast")
    async with sessionmaker() as session:
        broadcast = await session.scalar(select(Broadcast))
    assert broadcast is not None and broadcast.status == "cancelled"
    # a replayed button changes nothing
    replay = await admin.callback(paused.message_id, f"bc:resume:{broadcast.id}")
    assert replay == [] or "no longer valid" in str(await admin.callback_answers())
    async with sessionmaker() as session:
        assert (await session.get(Broadcast, broadcast.id)).status == "cancelled"


async def test_regional_admin_cannot_count_preview_or_reach_outside_the_scope(
    bot_app, sessionmaker
) -> None:
    app = bot_app
    admin = await _world(app, sessionmaker, scope="32.04")
    await admin.press("Broadcast")
    await admin.press("All KPM families")
    outside = await admin.send("73.71")
    assert "not in your area" in outside[-1].text
    wider = await admin.send("32")
    assert "not in your area" in wider[-1].text
    await admin.press("All of my area")
    await admin.press("Every language")
    await admin.send("Info e-Warong Bandung")
    preview = await admin.press("Continue")
    # 6 + 2 + 3 in Bandung (opted-out not counted); Makassar's 4 are invisible
    assert "Recipients now: 11" in preview[-1].text
    await admin.press("Send now")
    await deliver(app)
    assert all(messages == [] for messages in await _received(app, MAKASSAR))
    reached = [
        m for group in (BANDUNG, BANDUNG_EN, BANDUNG_BPNT_ONLY) for m in await _received(app, group)
    ]
    assert all(len(messages) == 1 for messages in reached) and len(reached) == 11
    # a forged control button for another region's broadcast is refused
    async with sessionmaker() as session, session.begin():
        national = Broadcast(
            created_by=1, audience="kpm", region_prefix="73", source_chat_id=admin.id,
            message_id=1, status="scheduled", scheduled_at=app.ctx.now() + timedelta(days=1),
        )  # fmt: skip
        session.add(national)
    last = (await admin.messages())[-1]
    await admin.callback(last.message_id, f"bc:cancel:{national.id}")
    assert "no longer valid" in str(await admin.callback_answers())
    async with sessionmaker() as session:
        assert (await session.get(Broadcast, national.id)).status == "scheduled"


async def test_broadcast_commands_are_refused_to_others(bot_app, sessionmaker) -> None:
    app = bot_app
    user = await app.user("Siti", language_code="en")
    answer = await user.send("/siaran")
    assert "only for admins" in answer[-1].text
    forged = await user.send("/start")
    await user.callback(forged[-1].message_id, "bc:cancel:1")
    assert "no longer valid" in str(await user.callback_answers())
