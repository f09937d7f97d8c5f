"""People in the chat: a family linking its KPM account, an e-Warong agent, an admin.

Each is made the way the real person gets there (the linking conversation, an invite
link, the operators' grant), through the bot the test runs (conftest's `Harness`).
"""

from __future__ import annotations

from services import accounts, invites
from tests.support.registry import SITI
from tests.support.shopping import WARUNG


async def link_by_phone(user, person=SITI, phone=None):
    """Walk a user through linking with phone, NIK and birth date; the final replies.

    `phone` (default: the family's own) is the contact the user shares."""
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.share_contact(phone or person["phone"])
    await user.send(person["nik"])
    return await user.send(person["birth_date"])


async def link_with_activation(user, nik: str, code: str):
    """Walk a user through linking with NIK and activation code; the final replies."""
    await user.send("/start")
    await user.press("Hubungkan akun KPM")
    await user.press("Saya punya kode aktivasi")
    await user.send(nik)
    return await user.send(code)


async def linked_kpm(app, person=SITI, name="Siti"):
    """A new user called `name`, linked by phone to `person`'s family."""
    kpm = await app.user(name)
    await link_by_phone(kpm, person)
    return kpm


async def make_agent(app, sessionmaker, ewarong=WARUNG, name="Agus"):
    """A new user who opened an agent invite of `ewarong` (made on the bot's clock);
    the user and the invite's payload."""
    async with sessionmaker() as session, session.begin():
        payload = await invites.create_invite(
            session, "agent", ewarong["code"], created_by=None, now=app.ctx.now()
        )
    agent = await app.user(name)
    replies = await agent.send(f"/start {payload}")
    assert "sekarang agen e-Warong" in replies[-1].text
    return agent, payload


async def make_admin(app, sessionmaker, name: str = "Admin", scope: str | None = None):
    """A new user granted admin (national, or for the region `scope`) as operators do."""
    admin = await app.user(name)
    async with sessionmaker() as session, session.begin():
        await accounts.grant_admin(session, admin.id, scope, actor=None)
    return admin
