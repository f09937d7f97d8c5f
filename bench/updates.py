"""Updates handled per second end to end, against a bare aiogram echo bot.

    .venv/bin/python -m bench.updates [--database-url URL] [--redis-url URL]
                                      [--users 500] [--per-user 4] [--rounds 3]

Both bots long-poll the Bot API emulator (its own process, limits off) over real HTTP,
in this process, with aiogram's default concurrent handling. Each round queues the
same updates in the emulator (each user presses "Status bantuan", sends /start, presses
"Bantuan" and sends /status: half status checks, half menu presses), then starts the
bot and times until every reply has arrived. The full bot runs with PostgreSQL and
Redis (FSM, dedup, throttle) and linked KPM families imported through the real
importers; the echo bot answers each text with the same text. The two alternate over
`--rounds`; the printed figure is the ratio of the medians (aim >= 0.5).

Database default: BENCH_DATABASE_URL, else
postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_updates (its registry tables
are EMPTIED; the name must contain "bench"). Redis default redis://127.0.0.1:6379/10.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import aiohttp
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message
from redis.asyncio import Redis
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from bench.broadcast import control, start_emulator
from bench.emulator_server import TOKEN
from bench.redemption import HASHER, ensure_database, register_families, reset
from infra.db import create_engine, create_sessionmaker, upgrade_database
from infra.settings import Settings
from models import Account

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_updates"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
FIRST_ID = 20_000_000
MIX = ("Status bantuan", "/start", "Bantuan", "/status")


async def prepare(url: str, users: int) -> None:
    await ensure_database(url)
    await asyncio.to_thread(upgrade_database, url)
    engine = create_engine(url)
    await reset(engine, 1)
    sessionmaker = create_sessionmaker(engine)
    family_ids = await register_families(sessionmaker, users)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(Account),
            [
                {"telegram_id": FIRST_ID + n, "beneficiary_id": family_ids[n], "locale": "id",
                 "language_code": "id"}
                for n in range(users)
            ],
        )  # fmt: skip
    await engine.dispose()


def echo_dispatcher() -> Dispatcher:
    router = Router()

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    dp = Dispatcher()
    dp.include_router(router)
    return dp


def make_bot(base: str) -> Bot:
    return Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(base)))


async def queue_updates(http: aiohttp.ClientSession, base: str, users: int, per_user: int) -> int:
    """Queue the round's updates (user by user, in order) and return how many."""
    semaphore = asyncio.Semaphore(32)

    async def user_sends(n: int) -> None:
        async with semaphore:
            for i in range(per_user):
                await control(
                    http, base, "POST", f"/users/{FIRST_ID + n}/messages",
                    json={"text": MIX[i % len(MIX)]},
                )  # fmt: skip

    await asyncio.gather(*(user_sends(n) for n in range(users)))
    return users * per_user


async def replies(http: aiohttp.ClientSession, base: str) -> int:
    stats = await control(http, base, "GET", "/stats")
    return int(stats["calls"].get("sendMessage", {}).get("200", 0))


async def timed_round(
    http: aiohttp.ClientSession, base: str, make: Callable[[], tuple[Dispatcher, Bot, dict]],
    users: int, per_user: int, expected: int | None,
) -> tuple[float, int, int]:  # fmt: skip
    """Seconds to handle one round, updates handled, replies sent."""
    await control(http, base, "DELETE", "/stats")
    count = await queue_updates(http, base, users, per_user)
    dp, bot, extra = make()
    started = time.perf_counter()
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=1, **extra)
    )
    last, still = -1, 0.0
    while True:
        await asyncio.sleep(0.05)
        sent = await replies(http, base)
        if expected is not None and sent >= expected:
            break
        if sent == last:  # warm-up: until replies stop coming for a second
            still += 0.05
            if expected is None and still >= 1.0:
                break
        else:
            last, still = sent, 0.0
    elapsed = time.perf_counter() - started - (1.0 if expected is None else 0.0)
    await dp.stop_polling()
    await polling
    await bot.session.close()
    return elapsed, count, sent


async def bench(args: argparse.Namespace) -> int:
    url = args.database_url
    if "bench" not in (make_url(url).database or ""):
        print("refusing: the database name must contain 'bench' (its tables are emptied)")
        return 2
    print(f"preparing {args.users} linked families in {make_url(url).database} ...", flush=True)
    await prepare(url, args.users)
    emulator, base = await start_emulator(0, limits=False)
    from bot.factory import create_bot, create_context, create_dispatcher

    settings = Settings(
        _env_file=None, database_url=url, redis_url=args.redis_url, bot_token=TOKEN,
        telegram_api_url=base, secret_key=HASHER.key.decode(),
    )  # fmt: skip
    ctx = await create_context(settings)

    def full() -> tuple[Dispatcher, Bot, dict]:
        return create_dispatcher(ctx), create_bot(settings), {}

    def bare() -> tuple[Dispatcher, Bot, dict]:
        return echo_dispatcher(), make_bot(base), {}

    try:
        async with aiohttp.ClientSession() as http:
            await control(
                http, base, "POST", "/users/bulk",
                json={"users": [{"id": FIRST_ID + n, "first_name": "KPM", "language_code": "id"}
                                for n in range(args.users)]},
            )  # fmt: skip
            expected: dict[str, int | None] = {"full": None, "bare": None}
            rates: dict[str, list[float]] = {"full": [], "bare": []}
            for name, make in (("full", full), ("bare", bare)):  # warm-up counts the replies
                await Redis.from_url(args.redis_url).flushdb()
                _, _, expected[name] = await timed_round(
                    http, base, make, args.users, args.per_user, None
                )
            for round_number in range(args.rounds):
                order = (("bare", bare), ("full", full))
                for name, make in order if round_number % 2 == 0 else order[::-1]:
                    await Redis.from_url(args.redis_url).flushdb()
                    seconds, count, sent = await timed_round(
                        http, base, make, args.users, args.per_user, expected[name]
                    )
                    rates[name].append(count / seconds)
                    print(
                        f"round {round_number + 1} {name:4}: {count} updates, {sent} replies "
                        f"in {seconds:.2f} s = {count / seconds:.0f} updates/s",
                        flush=True,
                    )
    finally:
        await ctx.close()
        emulator.terminate()
        await emulator.wait()
    full_rate, bare_rate = statistics.median(rates["full"]), statistics.median(rates["bare"])
    print(
        f"median: full bot {full_rate:.0f} updates/s, bare echo bot {bare_rate:.0f} updates/s; "
        f"ratio {full_rate / bare_rate:.2f} (aim >= 0.5)"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; emulator in its own process, limits off"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--per-user", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
