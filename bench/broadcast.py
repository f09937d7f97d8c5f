"""Broadcast delivery at Telegram's paid rate, with 1, 2 and 4 worker processes.

    .venv/bin/python -m bench.broadcast [--database-url URL] [--redis-url URL]
                                        [--recipients 100000] [--workers 1,2,4]

100,000 linked KPM accounts (bulk-inserted) and the same users in the Bot API emulator,
which runs in its own process enforcing a global limit of 1000 messages per second
(Telegram's paid broadcast limit). For each worker count, one broadcast to all KPM is
delivered by that many real `bansos-bot worker` processes (PAID_BROADCAST=1, the
limit shared through Redis). Printed per run: the achieved rate over the configured
1000/s (first to last successful copyMessage, as the emulator saw them; aim >= 0.98),
429s, duplicates, and the recipient-resolution time (planning the keyset chunks and
paging through every recipient, measured separately in this script).

The database (default `BENCH_DATABASE_URL`, else
postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_broadcast) is created when
missing and migrated; its account and registry tables are EMPTIED (the name must
contain "bench"). Redis default: redis://127.0.0.1:6379/10 (flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sys
import time
from datetime import date

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url

from bench.emulator_server import TOKEN
from bench.redemption import ensure_database
from infra.db import create_engine, create_sessionmaker, upgrade_database
from models import Account, Beneficiary, Broadcast
from services.broadcasts import store as broadcasts
from services.broadcasts.store import Audience, Claim
from tg.context import utc_now

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench_broadcast"
DEFAULT_REDIS = "redis://127.0.0.1:6379/10"
PAID_RATE = 1000.0
ADMIN = 42
FIRST_ID = 10_000_000
VILLAGES = ("32.04.10.2001", "35.78.01.1001", "73.71.01.1001")
REGIONS = [
    {"code": "32", "name": "Jawa Barat", "level": 1, "parent_code": None},
    {"code": "32.04", "name": "Kabupaten Bandung", "level": 2, "parent_code": "32"},
    {"code": "32.04.10", "name": "Margaasih", "level": 3, "parent_code": "32.04"},
    {"code": "32.04.10.2001", "name": "Margaasih", "level": 4, "parent_code": "32.04.10"},
    {"code": "35", "name": "Jawa Timur", "level": 1, "parent_code": None},
    {"code": "35.78", "name": "Kota Surabaya", "level": 2, "parent_code": "35"},
    {"code": "35.78.01", "name": "Karang Pilang", "level": 3, "parent_code": "35.78"},
    {"code": "35.78.01.1001", "name": "Warugunung", "level": 4, "parent_code": "35.78.01"},
    {"code": "73", "name": "Sulawesi Selatan", "level": 1, "parent_code": None},
    {"code": "73.71", "name": "Kota Makassar", "level": 2, "parent_code": "73"},
    {"code": "73.71.01", "name": "Mariso", "level": 3, "parent_code": "73.71"},
    {"code": "73.71.01.1001", "name": "Bontorannu", "level": 4, "parent_code": "73.71.01"},
]


async def prepare(url: str, recipients: int) -> None:
    """Migrate, empty, and insert `recipients` linked KPM accounts (no NIKs: hashes)."""
    await ensure_database(url)
    await asyncio.to_thread(upgrade_database, url)
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "TRUNCATE accounts, beneficiaries, broadcasts, audit_events "
                "RESTART IDENTITY CASCADE"
            )
        )
        for region in REGIONS:
            await conn.execute(
                text(
                    "INSERT INTO regions (code, name, level, parent_code) "
                    "VALUES (:code, :name, :level, :parent_code) ON CONFLICT (code) DO NOTHING"
                ),
                region,
            )
    sessionmaker = create_sessionmaker(engine)
    for start in range(0, recipients, 10_000):
        ids = range(FIRST_ID + start, FIRST_ID + min(start + 10_000, recipients))
        async with sessionmaker() as session, session.begin():
            beneficiary_ids = list(
                await session.scalars(
                    insert(Beneficiary).returning(Beneficiary.id, sort_by_parameter_order=True),
                    [
                        {
                            "nik_hash": hashlib.sha256(f"bench{tid}".encode()).hexdigest(),
                            "nik_last4": f"{tid % 10000:04d}",
                            "name": "KPM",
                            "birth_date": date(1980, 1, 1),
                            "village_code": VILLAGES[tid % len(VILLAGES)],
                            "is_pkh": tid % 2 == 0,
                            "is_bpnt": True,
                        }
                        for tid in ids
                    ],
                )
            )
            await session.execute(
                insert(Account),
                [
                    {"telegram_id": tid, "beneficiary_id": bid, "language_code": "id"}
                    for tid, bid in zip(ids, beneficiary_ids, strict=True)
                ],
            )
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def resolution_time(url: str, chunk_size: int) -> tuple[float, float, int]:
    """Seconds to plan the chunks and to page through every recipient (rolled back)."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        broadcast = Broadcast(
            created_by=ADMIN, audience="kpm", region_prefix="", source_chat_id=ADMIN,
            message_id=1, status="running", scheduled_at=utc_now(),
        )  # fmt: skip
        session.add(broadcast)
        await session.flush()
        started = time.perf_counter()
        chunks = await broadcasts.plan(session, broadcast, chunk_size)
        planned = time.perf_counter() - started
        started = time.perf_counter()
        seen = 0
        cursor = -(2**63)
        claim = Claim(0, broadcast.id, cursor, None)
        while page := await broadcasts.next_page(session, broadcast, claim, cursor, 200):
            seen += len(page)
            cursor = page[-1].telegram_id
        paged = time.perf_counter() - started
        await session.rollback()
    await engine.dispose()
    return planned, paged, seen if chunks else 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_emulator(
    port: int, *, limits: bool = True
) -> tuple[asyncio.subprocess.Process, str]:
    """The emulator in its own process (at Telegram's paid limit, or without limits)."""
    # Telegram's own CPU is not ours: the emulator keeps no per-call log here.
    options = ["--global-rate", str(PAID_RATE), "--global-burst", "30", "--no-event-log"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.emulator_server", "--port", str(port),
        *(options if limits else ["--no-limits", "--no-event-log"]), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    line = (await process.stdout.readline()).decode().strip()
    if not line.startswith("ready "):
        raise RuntimeError(f"emulator did not start: {line!r}")
    return process, line.split(" ", 1)[1]


async def control(http: aiohttp.ClientSession, base: str, method: str, path: str, **kw):
    async with http.request(method, f"{base}/control{path}", **kw) as response:
        body = await response.json()
    if not body.get("ok"):
        raise RuntimeError(f"{path}: {body}")
    return body


async def run_once(
    url: str, redis_url: str, base: str, http: aiohttp.ClientSession, workers: int,
    recipients: int, source_message: int, emulator_pid: int,
) -> dict[str, float]:  # fmt: skip
    await Redis.from_url(redis_url).flushdb()
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE broadcasts RESTART IDENTITY CASCADE"))
    async with create_sessionmaker(engine)() as session, session.begin():
        broadcast = await broadcasts.create(
            session, admin=ADMIN, audience=Audience("kpm"), source_chat_id=ADMIN,
            message_id=source_message, versions={}, scheduled_at=utc_now(), now=utc_now(),
        )  # fmt: skip
        broadcast_id = broadcast.id
    await control(http, base, "DELETE", "/stats")
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": base,
        "SECRET_KEY": "bench-secret-not-for-production",
        "PAID_BROADCAST": "1",
        "BROADCAST_CHUNK_SIZE": "2000",
        "WORKER_INTERVAL_SECONDS": "600",
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "worker",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    started = time.perf_counter()
    emulator_cpu = cpu_seconds(emulator_pid)
    workers_cpu = 0.0
    try:
        while True:
            async with create_sessionmaker(engine)() as session:
                status = (await session.get(Broadcast, broadcast_id)).status
            if status == "done":
                break
            if time.perf_counter() - started > 3 * recipients / PAID_RATE + 120:
                raise RuntimeError("the broadcast did not finish in time")
            await asyncio.sleep(0.5)
        workers_cpu = sum(cpu_seconds(process.pid) for process in processes)
        emulator_cpu = cpu_seconds(emulator_pid) - emulator_cpu
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()
        await engine.dispose()
    stats = await control(http, base, "GET", "/stats", params={"per_chat": "1"})
    calls = stats["calls"].get("copyMessage", {})
    ok = calls.get("200", 0)
    span = stats["ok_span_seconds"]["copyMessage"]
    per_chat = stats["per_chat"]
    return {
        "workers": workers,
        "delivered": ok,
        "recipients": len([c for c in per_chat if int(c) != ADMIN]),
        "duplicates": sum(count - 1 for count in per_chat.values()),
        "429": calls.get("429", 0),
        "seconds": span,
        "achieved": (ok - 1) / span if span else 0.0,
        "worker_ms": workers_cpu * 1000 / max(ok, 1),
        "emulator_ms": emulator_cpu * 1000 / max(ok, 1),
    }


async def bench(args: argparse.Namespace) -> int:
    url = args.database_url
    if "bench" not in (make_url(url).database or ""):
        print("refusing: the database name must contain 'bench' (its tables are emptied)")
        return 2
    print(f"preparing {args.recipients:,} recipients in {make_url(url).database} ...")
    await prepare(url, args.recipients)
    planned, paged, seen = await resolution_time(url, 2000)
    print(
        f"recipient resolution: planning {planned:.2f} s, paging all {seen:,} "
        f"recipients {paged:.2f} s"
    )
    emulator, base = await start_emulator(args.emulator_port)
    try:
        async with aiohttp.ClientSession() as http:
            await control(http, base, "POST", "/users", json={"id": ADMIN, "first_name": "Admin"})
            for start in range(0, args.recipients, 20_000):
                users = [
                    {"id": tid, "first_name": "KPM", "language_code": "id"}
                    for tid in range(
                        FIRST_ID + start, FIRST_ID + min(start + 20_000, args.recipients)
                    )
                ]
                await control(http, base, "POST", "/users/bulk", json={"users": users})
            sent = await control(
                http, base, "POST", f"/users/{ADMIN}/messages",
                json={"text": {"html": "<b>Pencairan BPNT</b> tahap 4"}},
            )  # fmt: skip
            results = []
            for workers in args.workers:
                result = await run_once(
                    url, args.redis_url, base, http, workers, args.recipients, sent["message_id"],
                    emulator.pid,
                )  # fmt: skip
                results.append(result)
                print(
                    f"{workers} worker(s): {result['delivered']:,} delivered to "
                    f"{result['recipients']:,} recipients in {result['seconds']:.1f} s = "
                    f"{result['achieved']:.1f}/s; achieved/configured "
                    f"{result['achieved'] / PAID_RATE:.3f}; 429s {result['429']}; "
                    f"duplicates {result['duplicates']}; CPU per message: workers "
                    f"{result['worker_ms']:.2f} ms, emulator {result['emulator_ms']:.2f} ms",
                    flush=True,
                )
    finally:
        emulator.terminate()
        await emulator.wait()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; emulator in its own process at {PAID_RATE:.0f}/s"
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument(
        "--workers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 4]
    )
    parser.add_argument("--emulator-port", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(bench(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
