"""Test families with BPNT money and an e-Warong, for shopping tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Beneficiary, EWarong
from services.identity import Hasher
from tests.registry import load_registry

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
    """The registry of tests/registry.py plus two e-Warongs; returns beneficiary ids by name."""
    await load_registry(sessionmaker, hasher, folder)
    async with sessionmaker() as session, session.begin():
        session.add_all([EWarong(**WARUNG), EWarong(**OTHER_WARUNG)])
    async with sessionmaker() as session:
        rows = await session.execute(select(Beneficiary.name, Beneficiary.id))
        return {name.split()[0].lower(): id_ for name, id_ in rows}
