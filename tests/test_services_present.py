"""CI must run against real PostgreSQL and Redis: fail (never skip) when they are missing."""

from __future__ import annotations

import os

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from infra.db import create_engine

REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"


@pytest.mark.skipif(not REQUIRED, reason="services are optional outside CI (REQUIRE_SERVICES)")
async def test_ci_runs_against_postgresql_and_redis() -> None:
    database_url = os.environ.get("TEST_DATABASE_URL", "")
    redis_url = os.environ.get("TEST_REDIS_URL", "")
    assert database_url.startswith("postgresql"), "TEST_DATABASE_URL must point at PostgreSQL"
    assert redis_url.startswith("redis"), "TEST_REDIS_URL must point at Redis"
    engine = create_engine(database_url)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT 1")) == 1
    await engine.dispose()
    redis = Redis.from_url(redis_url)
    assert await redis.ping()
    await redis.aclose()
