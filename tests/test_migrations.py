"""The migrated schema is exactly what the models declare (on SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from models import Base


async def test_migrations_match_models(engine) -> None:
    def diff(connection):
        context = MigrationContext.configure(connection)
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == []


async def test_pkh_rates_are_seeded_as_data(session) -> None:
    from sqlalchemy import select

    from models import PkhComponentRate

    rates = {r.component: r.yearly_amount for r in await session.scalars(select(PkhComponentRate))}
    assert rates == {
        "ibu_hamil": 3_000_000, "anak_usia_dini": 3_000_000, "anak_sd": 900_000,
        "anak_smp": 1_500_000, "anak_sma": 2_000_000, "disabilitas_berat": 2_400_000,
        "lansia": 2_400_000,
    }  # fmt: skip
