"""The delivery engine against the Bot API emulator with Telegram's limits switched on:
the configured rate with no 429s, a fleet that backs off on 429, 403s marked, several
workers sharing one limit, and a worker process killed mid-broadcast."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from infra.settings import Settings
from models import Account, Broadcast, BroadcastFailure
from sandbox.client import EmulatorClient
from sandbox.emulator import BotApiEmulator
from services.broadcasts import store as broadcasts
from services.broadcasts.engine import BroadcastEngine
from services.broadcasts.store import Audience
from tests.support.broadcast import Group, add_emulator_users, populate
from tg.context import utc_now

TOKEN = "123456:TEST-token"
ADMIN = 42
RATE = 300.0  # the configured rate and the emulator's global limit


@dataclass
class Delivery:
    settings: Settings
    emulator: BotApiEmulator
    client: EmulatorClient
    sessionmaker: object
    source_message: int

    def engine(self, **overrides: object) -> BroadcastEngine:
        from bot.factory import create_bot, create_i18n
        from bot.worker import make_broadcast_engine

        settings = self.settings.model_copy(update=overrides)
        bot = create_bot(settings)
        self._bots.append(bot)
        return make_broadcast_engine(
            self.sessionmaker,
            settings,
            bot,
            create_i18n(settings),
            utc_now,
        )

    async def broadcast(self, group: str = "kpm") -> int:
        async with self.sessionmaker() as session, session.begin():
            broadcast = await broadcasts.create(
                session, admin=ADMIN, audience=Audience(group), source_chat_id=ADMIN,
                message_id=self.source_message, versions={}, scheduled_at=utc_now(),
                now=utc_now(),
            )  # fmt: skip
        return broadcast.id

    async def broadcast_to(self, group: Group) -> int:
        """Register the group in the database and the emulator, create a broadcast to all
        KPM and start the emulator's counts afresh; returns the broadcast's id."""
        await populate(self.sessionmaker, group)
        await add_emulator_users(self.client, group)
        broadcast_id = await self.broadcast()
        await self.client.reset_stats()
        return broadcast_id

    async def status(self, broadcast_id: int) -> str:
        async with self.sessionmaker() as session:
            return (await session.get(Broadcast, broadcast_id)).status

    async def copies(self) -> dict[int, int]:
        stats = await self.client.stats(per_chat=True)
        return {int(chat): count for chat, count in stats["per_chat"].items()}

    async def copy_calls(self) -> dict[str, int]:
        return (await self.client.stats())["calls"].get("copyMessage", {})

    _bots: list = None


@pytest.fixture
async def delivery(settings: Settings, sessionmaker, clean_redis) -> AsyncIterator[Delivery]:
    emulator = BotApiEmulator(token=TOKEN, global_rate=RATE, global_burst=30)
    url = await emulator.start()
    settings.telegram_api_url = url
    settings.broadcast_rate = RATE
    settings.broadcast_chunk_size = 250
    settings.broadcast_concurrency = 8
    settings.broadcast_progress_seconds = 1.0
    client = EmulatorClient(url)
    await client.user(ADMIN, "Admin", language_code="en")
    sent = await client.request(
        "POST", f"/users/{ADMIN}/messages", json={"text": {"html": "<b>Pengumuman</b> BPNT"}}
    )
    state = Delivery(settings, emulator, client, sessionmaker, sent["message_id"])
    state._bots = []
    try:
        yield state
    finally:
        for bot in state._bots:
            await bot.session.close()
        await client.close()
        await emulator.stop()


async def eventually(check, limit: float, every: float = 0.1) -> None:
    """Poll state kept by another task or process (the database, the emulator)."""
    async with asyncio.timeout(limit):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(every)


async def _run(
    *engines: BroadcastEngine, until: int, delivery: Delivery, limit: float = 120
) -> None:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(engine.run(stop)) for engine in engines]
    try:
        await eventually(lambda: _done(delivery, until), limit)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for engine in engines:
            await engine.close()


async def test_five_thousand_recipients_at_the_configured_rate_without_a_single_429(
    delivery: Delivery,
) -> None:
    group = Group(first_id=1_000_001, count=5000, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    await _run(delivery.engine(), until=broadcast_id, delivery=delivery)

    calls = await delivery.copy_calls()
    assert calls == {"200": 5000}  # not one 429
    copies = await delivery.copies()
    assert set(copies) == set(group.ids) and set(copies.values()) == {1}
    span = (await delivery.client.stats())["ok_span_seconds"]["copyMessage"]
    achieved = 4999 / span
    print(f"\n5,000 recipients: achieved {achieved:.1f}/s of {RATE:.0f}/s ({achieved / RATE:.3f})")
    assert achieved <= RATE * 1.02  # never faster than allowed
    async with delivery.sessionmaker() as session:
        progress = await broadcasts.progress(session, broadcast_id)
    assert progress is not None and (progress.sent, progress.failed, progress.blocked) == (
        5000, 0, 0,
    )  # fmt: skip


async def test_a_429_pauses_the_whole_fleet_which_then_finishes(delivery: Delivery) -> None:
    group = Group(first_id=2_000_001, count=1200, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    engines = [delivery.engine(), delivery.engine()]
    if not delivery.settings.redis_url:  # in one process the fleet shares one limiter
        engines[1].limiter = engines[0].limiter
        engines[1].limiter.close = _noop
    stop = asyncio.Event()
    tasks = [asyncio.create_task(engine.run(stop)) for engine in engines]
    await eventually(lambda: _sent_at_least(delivery, 300), 60, 0.05)
    seq = await delivery.client.last_seq()
    await delivery.client.faults(429, seconds=0.5, retry_after=2, methods=["copyMessage"])
    await eventually(lambda: _done(delivery, broadcast_id), 60)
    stop.set()
    await asyncio.gather(*tasks)
    for engine in engines:
        await engine.close()

    copies = await delivery.copies()
    assert set(copies) == set(group.ids) and set(copies.values()) == {1}
    events = [e for e in await delivery.client.events(since=seq) if e["method"] == "copyMessage"]
    refused = [e for e in events if e["error_code"] == 429]
    assert refused, "the fault was never hit"
    # after the first 429, nobody in the fleet sent anything for retry_after seconds
    first = refused[0]["time"]
    resumed = min(e["time"] for e in events if e["ok"] and e["time"] > first)
    assert resumed - first >= 1.9
    # only the sends already on their way met the 429: the fleet did not keep hammering
    assert len(refused) <= 2 * delivery.settings.broadcast_concurrency
    print(f"\n429 for 0.5 s: {len(refused)} refused sends, resumed after {resumed - first:.2f} s")


async def _done(delivery: Delivery, broadcast_id: int) -> bool:
    return await delivery.status(broadcast_id) == "done"


async def _sent_at_least(delivery: Delivery, count: int) -> bool:
    return sum((await delivery.copies()).values()) >= count


async def _noop() -> None:
    return None


async def test_users_who_blocked_the_bot_are_marked_and_left_out_next_time(
    delivery: Delivery,
) -> None:
    group = Group(first_id=3_000_001, count=60, village_prefix="32.04")
    await populate(delivery.sessionmaker, group)
    await add_emulator_users(delivery.client, group)
    blocked = list(group.ids)[::10]
    for telegram_id in blocked:
        await delivery.client.request("POST", f"/users/{telegram_id}/block", json={})
    first = await delivery.broadcast()
    counted = REGISTRY.get_sample_value("bansos_broadcast_messages_total", {"outcome": "blocked"})
    await _run(delivery.engine(), until=first, delivery=delivery)
    assert (
        REGISTRY.get_sample_value("bansos_broadcast_messages_total", {"outcome": "blocked"})
        == (counted or 0) + 6
    )
    async with delivery.sessionmaker() as session:
        progress = await broadcasts.progress(session, first)
        marked = set(
            await session.scalars(
                select(Account.telegram_id).where(Account.blocked_bot_at.is_not(None))
            )
        )
    assert progress is not None and (progress.sent, progress.blocked) == (54, 6)
    assert marked == set(blocked)

    await delivery.client.reset_stats()
    second = await delivery.broadcast()
    async with delivery.sessionmaker() as session:
        assert (await session.get(Broadcast, second)).recipients == 54
    await _run(delivery.engine(), until=second, delivery=delivery)
    assert (await delivery.copy_calls()) == {"200": 54}  # nobody blocked was even tried


async def test_failures_are_retried_with_backoff_then_recorded(delivery: Delivery) -> None:
    group = Group(first_id=4_000_001, count=20, village_prefix="32.04")
    await populate(delivery.sessionmaker, group)
    await add_emulator_users(delivery.client, group)
    # two 502s are absorbed by retries; a user the emulator does not know fails for good
    await delivery.client.faults(502, count=2, methods=["copyMessage"])
    await populate(
        delivery.sessionmaker, Group(first_id=4_100_001, count=1, village_prefix="32.04")
    )
    broadcast_id = await delivery.broadcast()
    await _run(delivery.engine(), until=broadcast_id, delivery=delivery)
    async with delivery.sessionmaker() as session:
        progress = await broadcasts.progress(session, broadcast_id)
        failures = list(await session.scalars(select(BroadcastFailure)))
    assert progress is not None and (progress.sent, progress.failed) == (20, 1)
    assert [(f.telegram_id, f.error) for f in failures] == [
        (4_100_001, "Bad Request: chat not found")
    ]
    assert set((await delivery.copies()).values()) == {1}


@pytest.mark.skipif(not os.environ.get("TEST_REDIS_URL"), reason="needs Redis (CI has it)")
async def test_two_workers_share_one_limit_through_redis(delivery: Delivery) -> None:
    group = Group(first_id=5_000_001, count=1500, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    await _run(delivery.engine(), delivery.engine(), until=broadcast_id, delivery=delivery)
    assert await delivery.copy_calls() == {"200": 1500}
    span = (await delivery.client.stats())["ok_span_seconds"]["copyMessage"]
    achieved = 1499 / span
    print(f"\ntwo workers, one limit: {achieved:.1f}/s of {RATE:.0f}/s")
    assert achieved <= RATE * 1.02


async def test_a_killed_worker_process_is_taken_over_without_duplicates(
    delivery: Delivery, database_url: str, redis_url: str | None
) -> None:
    """A real `bansos-bot worker` process is SIGKILLed mid-broadcast; a second one takes
    its chunks over when their leases run out. Every recipient gets the message; only
    those in flight at the kill may get it twice, and the test reports how many."""
    group = Group(first_id=6_000_001, count=2500, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": delivery.emulator.base_url or "",
        "SECRET_KEY": delivery.settings.secret_key or "",
        "BROADCAST_RATE": "250",
        "BROADCAST_CHUNK_SIZE": "250",
        "BROADCAST_CONCURRENCY": "8",
        "BROADCAST_LEASE_SECONDS": "3",
        "WORKER_INTERVAL_SECONDS": "60",
    }
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url

    async def worker() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "worker", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    first = await worker()
    await eventually(lambda: _sent_at_least(delivery, 800), 60, 0.05)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    at_kill = sum((await delivery.copies()).values())
    second = await worker()
    try:
        await eventually(lambda: _done(delivery, broadcast_id), 90)
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = await second.communicate()
    copies = await delivery.copies()
    assert set(copies) == set(group.ids), "somebody never got the broadcast"
    duplicates = sum(count - 1 for count in copies.values())
    print(
        f"\nkilled after {at_kill} sends; {duplicates} duplicate(s) "
        f"(messages in flight at the kill); finished at {datetime.now(UTC):%H:%M:%S}"
    )
    # at most one message per chunk in flight: concurrency (8) chunks
    assert duplicates <= 8
    async with delivery.sessionmaker() as session:
        progress = await broadcasts.progress(session, broadcast_id)
    assert progress is not None and progress.sent == 2500
    assert b"Traceback" not in stderr


async def test_a_broadcast_whose_last_chunks_ended_together_is_still_finished(
    delivery: Delivery,
) -> None:
    """On PostgreSQL two chunks finishing at once each see the other undone, so neither
    marks the broadcast done; the engine's sweep does (this once stalled a test)."""
    from models import BroadcastChunk

    async with delivery.sessionmaker() as session, session.begin():
        broadcast = Broadcast(
            created_by=ADMIN, audience="kpm", source_chat_id=ADMIN, message_id=1,
            status="running", scheduled_at=utc_now(), started_at=utc_now(), recipients=2,
        )  # fmt: skip
        session.add(broadcast)
        await session.flush()
        session.add_all(
            BroadcastChunk(broadcast_id=broadcast.id, first_after=n, last=n + 1, cursor=n + 1,
                           done=True, sent=1)
            for n in (0, 1)
        )  # fmt: skip
    engine = delivery.engine()
    try:
        await engine.run_until_idle()
    finally:
        await engine.close()
    assert await delivery.status(broadcast.id) == "done"


async def test_pause_stops_the_fleet_within_seconds_and_resume_finishes_exactly_once(
    delivery: Delivery,
) -> None:
    group = Group(first_id=7_000_001, count=1500, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    engine = delivery.engine()
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        await eventually(lambda: _sent_at_least(delivery, 200), 60, 0.05)
        async with delivery.sessionmaker() as session, session.begin():
            assert await broadcasts.change(
                session, broadcast_id, broadcasts.Action.PAUSE, admin=ADMIN, scope="",
                now=utc_now(),
            )  # fmt: skip
        await asyncio.sleep(3)  # status is re-checked at least every 2 s
        at_pause = sum((await delivery.copies()).values())
        await asyncio.sleep(1.5)
        assert sum((await delivery.copies()).values()) == at_pause < 1500
        async with delivery.sessionmaker() as session, session.begin():
            assert await broadcasts.change(
                session, broadcast_id, broadcasts.Action.RESUME, admin=ADMIN, scope="",
                now=utc_now(),
            )  # fmt: skip
        await eventually(lambda: _done(delivery, broadcast_id), 60)
    finally:
        stop.set()
        await task
        await engine.close()
    copies = await delivery.copies()
    assert set(copies) == set(group.ids) and set(copies.values()) == {1}


async def test_a_429_longer_than_the_lease_causes_no_takeover_and_no_duplicate(
    delivery: Delivery,
) -> None:
    group = Group(first_id=8_000_001, count=300, village_prefix="32.04")
    broadcast_id = await delivery.broadcast_to(group)
    await delivery.client.faults(429, count=1, retry_after=4, methods=["copyMessage"])
    engines = [delivery.engine(broadcast_lease_seconds=1.5) for _ in range(2)]
    if not delivery.settings.redis_url:
        engines[1].limiter = engines[0].limiter
    await _run(*engines, until=broadcast_id, delivery=delivery)
    copies = await delivery.copies()
    assert set(copies) == set(group.ids) and set(copies.values()) == {1}
