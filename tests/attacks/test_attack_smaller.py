"""The smaller findings of issue 11 that are not about Napza or imports: the throttle's
place (finding 15) and a regional admin's broadcast to partners (finding 16)."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from services.broadcasts.store import Audience, count_recipients
from services.invites import create_invite
from services.napza.partners import import_partners
from tests.support.clock import NOW
from tests.support.napza import PARTNERS_CSV


@pytest.mark.throttle(burst=5, window=120)
async def test_finding_15_a_flood_of_updates_costs_no_sql(bot_app):
    """Before: the throttle ran after the session and the account load, so 200 throttled
    callbacks still cost 401 SQL statements."""
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(bot_app.ctx.engine.sync_engine, "before_cursor_execute", count)
    try:
        flooder = await bot_app.user("Flood", language_code="en")
        for _ in range(5):  # the burst is answered normally
            await flooder.send("/start")
        answered = len(statements)
        assert answered > 0
        menu = await flooder.last()
        for _ in range(40):
            await flooder.callback(menu.message_id, "lang:id")
        assert len(statements) == answered  # not one statement for the throttled ones
    finally:
        event.remove(bot_app.ctx.engine.sync_engine, "before_cursor_execute", count)
    answers = [a["text"] for a in await flooder.callback_answers() if a.get("text")]
    # once, in the language Telegram reports (the account was not even read)
    assert answers == ["You are sending messages too fast. Please wait a few seconds."]


async def test_finding_16_a_regional_broadcast_to_partners_stays_inside_the_region(
    bot_app, sessionmaker, tmp_path
):
    """Before: "to partners" from the Bandung admin reached the national and province-wide
    partners' staff too."""
    path = tmp_path / "partners.csv"
    path.write_text(PARTNERS_CSV, encoding="utf-8")  # IPWL-3204 (32.04), PKM-32 (32), RS-NAS (*)
    assert (await import_partners(sessionmaker, path)).ok
    from services.invites import accept_invite

    async with sessionmaker() as session, session.begin():
        for number, org in enumerate(("IPWL-3204", "PKM-32", "RS-NAS"), start=1):
            payload = await create_invite(session, "partner", org, created_by=None, now=NOW)
            await accept_invite(session, payload, 5000 + number, NOW)
    async with sessionmaker() as session:
        bandung = await count_recipients(session, Audience("partners", "32.04"))
        west_java = await count_recipients(session, Audience("partners", "32"))
        country = await count_recipients(session, Audience("partners", ""))
    assert (bandung, west_java, country) == (1, 2, 3)
