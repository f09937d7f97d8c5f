"""The background worker: ticks with a controllable clock, stops on request, survives errors."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.worker import run_worker, worker_tick
from infra.settings import Settings
from models import HelpRequest
from services.napza import actions, routing
from tests.support.clock import NOW, Clock
from tests.support.napza import NOTE, REQUESTER, add_partners, create


class Ctx:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings


async def test_worker_tick_expires_and_purges(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await add_partners(sessionmaker, [("A", "32.04", [1]), ("B", "32", [2])])
    urgent = (await create(sessionmaker, urgent=True)).request
    done = (await create(sessionmaker)).request
    async with sessionmaker() as session, session.begin():
        await actions.cancel(session, done.ticket, REQUESTER, NOW)
    ctx = Ctx(sessionmaker, settings)
    assert await worker_tick(ctx, NOW + timedelta(minutes=30)) == []
    deliveries = await worker_tick(ctx, NOW + timedelta(minutes=60))
    assert [(d.request.id, d.partner.code if d.partner else None) for d in deliveries] == [
        (urgent.id, "B")
    ]
    await worker_tick(ctx, NOW + timedelta(days=settings.napza_retention_days, minutes=1))
    async with sessionmaker() as session:
        purged = await session.get(HelpRequest, done.id)
        kept = await session.get(HelpRequest, urgent.id)
    assert purged is not None and purged.note is None and purged.purged_at is not None
    assert kept is not None and kept.note == NOTE


async def test_run_worker_notifies_survives_errors_and_stops(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await add_partners(sessionmaker, [("A", "32.04", [1]), ("B", "32", [2])])
    first = (await create(sessionmaker, urgent=True)).request
    second = (await create(sessionmaker, urgent=True, region="32.73")).request
    settings.worker_interval_seconds = 0.01
    clock = Clock()
    seen: list[int] = []
    stop = asyncio.Event()

    async def notify(delivery: routing.Delivery) -> None:
        seen.append(delivery.request.id)
        if len(seen) == 1:
            raise RuntimeError("Telegram is down")  # must not kill the worker
        if len(seen) >= 3:
            stop.set()

    task = asyncio.create_task(run_worker(sessionmaker, notify, settings, clock, stop))
    await asyncio.sleep(0.05)
    assert seen == [] and not task.done()
    clock.now = NOW + timedelta(hours=1)  # first: A -> B; second (only B covers 32.73): escalated
    for _ in range(200):
        if len(seen) >= 2:
            break
        await asyncio.sleep(0.01)
    assert sorted(seen) == sorted([first.id, second.id])
    clock.now = NOW + timedelta(hours=2)  # first: B -> escalated
    await asyncio.wait_for(task, 5)
    assert seen[2] == first.id and len(seen) == 3 and stop.is_set()


async def test_run_worker_backs_off_when_a_tick_fails(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    settings.worker_interval_seconds = 0.01
    calls = 0
    stop = asyncio.Event()

    def clock():
        nonlocal calls
        calls += 1
        if calls >= 3:
            stop.set()
        return NOW.replace(tzinfo=None)  # naive: every tick raises ValueError

    async def notify(delivery: routing.Delivery) -> None:  # pragma: no cover
        raise AssertionError("nothing to notify")

    await asyncio.wait_for(run_worker(sessionmaker, notify, settings, clock, stop), 10)
    assert calls == 3


async def test_run_worker_returns_at_once_when_stopped(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    settings.worker_interval_seconds = 3600
    stop = asyncio.Event()

    async def notify(delivery: routing.Delivery) -> None:  # pragma: no cover
        pass

    task = asyncio.create_task(run_worker(sessionmaker, notify, settings, Clock(), stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
