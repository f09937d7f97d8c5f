"""Many linked KPM accounts at once (bulk inserts), and the same users in the emulator."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models import Account, Beneficiary, Region
from sandbox.client import EmulatorClient


@dataclass(frozen=True)
class Group:
    """`count` families in one village, linked to Telegram ids from `first_id`."""

    first_id: int
    count: int
    village_prefix: str
    pkh: bool = True
    bpnt: bool = True
    locale: str | None = None
    broadcasts_off: bool = False

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.count)


async def village(session: AsyncSession, prefix: str) -> str:
    code = await session.scalar(
        select(Region.code)
        .where(Region.code.startswith(prefix), func.length(Region.code) == 13)
        .order_by(Region.code)
        .limit(1)
    )
    assert code is not None, prefix
    return code


async def populate(sessionmaker: async_sessionmaker[AsyncSession], *groups: Group) -> None:
    """Insert beneficiaries and linked accounts in batches (no NIKs: random hashes)."""
    async with sessionmaker() as session, session.begin():
        for group in groups:
            code = await village(session, group.village_prefix)
            for start in range(0, group.count, 2000):
                ids = list(group.ids)[start : start + 2000]
                rows = [
                    {
                        "nik_hash": hashlib.sha256(f"nik{tid}".encode()).hexdigest(),
                        "nik_last4": f"{tid % 10000:04d}",
                        "name": f"KPM {tid}",
                        "birth_date": date(1980, 1, 1),
                        "village_code": code,
                        "is_pkh": group.pkh,
                        "is_bpnt": group.bpnt,
                    }
                    for tid in ids
                ]
                beneficiary_ids = list(
                    await session.scalars(
                        insert(Beneficiary).returning(Beneficiary.id, sort_by_parameter_order=True),
                        rows,
                    )
                )
                await session.execute(
                    insert(Account),
                    [
                        {
                            "telegram_id": tid,
                            "beneficiary_id": bid,
                            "locale": group.locale,
                            "language_code": group.locale or "id",
                            "broadcasts_off": group.broadcasts_off,
                        }
                        for tid, bid in zip(ids, beneficiary_ids, strict=True)
                    ],
                )


async def add_emulator_users(client: EmulatorClient, *groups: Group) -> None:
    for group in groups:
        ids = list(group.ids)
        for start in range(0, len(ids), 5000):
            await client.bulk_users(
                [
                    {"id": tid, "first_name": f"KPM{tid}", "language_code": group.locale or "id"}
                    for tid in ids[start : start + 5000]
                ]
            )
