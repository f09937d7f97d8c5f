"""Test families with BPNT money and two e-Warongs, and the steps of a sale in the chat."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Beneficiary, EWarong
from services.identity import Hasher
from tests.support.registry import load_registry

WARUNG = {
    "code": "EW-3204-001", "name": "e-Warong Sri Rejeki", "village_code": "32.04.10.2001",
    "address": "Jl. Raya Margaasih No. 12", "latitude": -6.95, "longitude": 107.55,
    "bank": "BNI",
}  # fmt: skip
OTHER_WARUNG = {
    **WARUNG, "code": "EW-3273-009", "name": "e-Warong Berkah", "village_code": "32.73.01.1001",
    "address": "Jl. Sukarasa 3", "latitude": -6.87, "longitude": 107.59,
}  # fmt: skip


async def shopping_world(
    sessionmaker: async_sessionmaker[AsyncSession], hasher: Hasher, folder: Path
) -> dict[str, int]:
    """The families of support/registry.py plus two e-Warongs; beneficiary ids by name."""
    await load_registry(sessionmaker, hasher, folder)
    async with sessionmaker() as session, session.begin():
        session.add_all([EWarong(**WARUNG), EWarong(**OTHER_WARUNG)])
    async with sessionmaker() as session:
        rows = await session.execute(select(Beneficiary.name, Beneficiary.id))
        return {name.split()[0].lower(): id_ for name, id_ in rows}


async def shopping_code(kpm) -> str:
    """The shopping code a linked family asks for, as shown (`1234 5678 9012`)."""
    reply = (await kpm.press("Kode belanja"))[-1]
    match = re.search(r"<b>(\d{4} \d{4} \d{4})</b>", reply.html)
    assert match, reply.text
    return match.group(1)


async def fill_basket(agent, code):
    """An agent starts a sale with `code` and adds Rp60.000 of rice and eggs; the replies
    to the code."""
    await agent.press("Transaksi baru")
    replies = await agent.send(code)
    await agent.press("Beras")
    await agent.send("2 x 15000")
    await agent.press("Telur")
    await agent.send("30000")
    return replies
