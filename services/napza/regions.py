"""Finding the requester's regency for the Napza questionnaire: by name or by location."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from infra.db import storable
from models import Region
from services.bpnt.ewarongs import nearest

SEARCH_MIN = 3
SEARCH_MAX = 60  # a longer text is no regency name: not searched at all
NEAR_KM = 50.0
REGENCY_LEVEL = 2


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search_regencies(
    session: AsyncSession, text: str, limit: int = 6
) -> list[tuple[str, str]]:
    """(code, name) of regencies/cities whose name contains every word of `text`.

    Case-insensitive; best first: an exact name, or "Kota X"/"Kabupaten X" equal to
    `text`, then shorter names, then by name. Nothing for fewer than 3 characters or
    more than 60.
    """
    if len(text.strip()) > SEARCH_MAX:
        return []
    query = " ".join(storable(text).split()).lower()
    if len(query) < SEARCH_MIN or limit <= 0:
        return []
    conditions = [
        func.lower(Region.name).like(f"%{_like_escape(word)}%", escape="\\")
        for word in query.split()
    ]
    rows = (
        await session.execute(
            select(Region.code, Region.name).where(Region.level == REGENCY_LEVEL, *conditions)
        )
    ).all()
    exact = {query, f"kota {query}", f"kabupaten {query}", f"kab. {query}"}

    def rank(row: Any) -> tuple[int, int, str, str]:
        name = row.name.lower()
        return (0 if name in exact else 1, len(name), name, row.code)

    return [(row.code, row.name) for row in sorted(rows, key=rank)[:limit]]


async def regency_near(session: AsyncSession, latitude: float, longitude: float) -> str | None:
    """The regency code for a shared location, or None.

    The region data has no coordinates, so this uses the regency of the nearest
    ACTIVE e-Warong when it is within 50 km (e-Warongs carry coordinates and a
    village code); otherwise None and the requester types their regency instead.
    """
    found = await nearest(session, latitude, longitude, 1)
    if not found or found[0].distance_km > NEAR_KM:
        return None
    return ".".join(found[0].village_code.split(".")[:2])


async def is_regency(session: AsyncSession, code: str) -> bool:
    """Whether `code` is a regency (kabupaten/kota) in the regions table."""
    level = await session.scalar(select(Region.level).where(Region.code == code))
    return level == REGENCY_LEVEL
