"""Redemptions per second under concurrent agents, against bare single-row UPDATEs.

    .venv/bin/python -m bench.redemption [--database-url URL] [--confirmations N]
                                         [--agents 50] [--rounds 5]

(a) N confirmations through `redemptions.confirm()`, from `--agents` concurrent agent
tasks, each confirmation in its own session and transaction (as the bot handles
one update), each agent serving its own families at its own e-Warong;
(b) the same N transactions doing only `UPDATE bare_wallets SET balance =
balance - 1 WHERE id = :id` on a bare table, with the same concurrency, engine
and pool. The two alternate for a few rounds (which goes first alternates too);
the script prints each round and the medians. The figure that matters is the
ratio, measured side by side on the same machine; the aim is at least 1/3.

The database (default `BENCH_DATABASE_URL`, else
`postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench`) is created when
missing, migrated, and its registry tables are EMPTIED: the script refuses a
database whose name does not contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import sqlalchemy
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from infra.db import create_engine, create_sessionmaker, upgrade_database
from models import Beneficiary, BpntWallet, EWarong, LedgerEntry, Redemption, ShoppingCode
from models.base import utcnow
from models.enums import LedgerKind
from services.bpnt import redemptions
from services.bpnt.redemptions import BasketLine, ConfirmResult, RedemptionDraft
from services.identity import Hasher
from services.imports.beneficiaries import import_beneficiary_records
from services.imports.csvfile import records_from_dicts
from services.imports.disbursements import import_disbursement_records

DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/bansos_bench"
HASHER = Hasher(b"bench-secret-not-for-production")
# Only the region rows the families and e-Warongs need (codes and names from data/wilayah).
REGIONS = [
    {"code": "32", "name": "Jawa Barat", "level": 1, "parent_code": None},
    {"code": "32.04", "name": "Kabupaten Bandung", "level": 2, "parent_code": "32"},
    {"code": "32.04.10", "name": "Margaasih", "level": 3, "parent_code": "32.04"},
    {"code": "32.04.10.2001", "name": "Margaasih", "level": 4, "parent_code": "32.04.10"},
]
VILLAGE = "32.04.10.2001"
MONTHS = 4  # BPNT months of Rp200.000 credited to every family
BASKETS = (
    (BasketLine("beras", 2, 12_500), BasketLine("telur", 1, 28_000)),
    (BasketLine("beras", 1, 13_000),),
    (BasketLine("daging_ayam", 1, 38_000), BasketLine("tahu", 3, 1_500)),
    (BasketLine("total", 1, 47_500),),
)  # at most Rp53.000: four months of credit outlast 11 rounds and the warm-up
CODE_EVERY = 5  # every 5th family is served by KKS number (agent-attested), the rest by code
KKS_MONTH = "2026-05"
KKS_CAP = 10**6


@dataclass(frozen=True)
class Job:
    """One confirmation (and, for the bare run, the row it stands for)."""

    family_index: int
    draft: RedemptionDraft


# ---------------------------------------------------------------------------
# Database


async def ensure_database(url: str) -> None:
    """CREATE DATABASE when missing, through a maintenance connection to `postgres`."""
    target = make_url(url)
    connection = await asyncpg.connect(
        host=target.host or "127.0.0.1",
        port=target.port or 5432,
        user=target.username,
        password=target.password,
        database="postgres",
    )
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", target.database
        )
        if not exists:
            await connection.execute(f'CREATE DATABASE "{target.database}"')
            print(f"created database {target.database}")
    finally:
        await connection.close()


async def reset(engine: AsyncEngine, families: int) -> None:
    """Empty the registry tables (and what hangs off them) and (re)build the bare table."""
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE beneficiaries, ewarongs, audit_events RESTART IDENTITY CASCADE")
        )
        for region in REGIONS:
            await conn.execute(
                text(
                    "INSERT INTO regions (code, name, level, parent_code) "
                    "VALUES (:code, :name, :level, :parent_code) ON CONFLICT (code) DO NOTHING"
                ),
                region,
            )
        await conn.execute(text("DROP TABLE IF EXISTS bare_wallets"))
        await conn.execute(
            text("CREATE TABLE bare_wallets (id bigint PRIMARY KEY, balance bigint NOT NULL)")
        )
        await conn.execute(
            text(
                "INSERT INTO bare_wallets (id, balance) "
                "SELECT n, 1000000000 FROM generate_series(0, :last) AS n"
            ),
            {"last": families - 1},
        )


def nik(index: int) -> str:
    """A structurally valid NIK of Margaasih (320410), birth date varying with the index."""
    day, month, serial = 1 + index % 28, 1 + (index // 28) % 12, 1 + index // 336
    return f"320410{day:02d}{month:02d}85{serial:04d}"


async def register_families(
    sessionmaker: async_sessionmaker[AsyncSession], families: int
) -> list[int]:
    """Families imported through the real importers; their BPNT months credit the wallets."""
    people = [
        {
            "nik": nik(n),
            "name": f"Keluarga Bench {n}",
            "birth_date": f"1985-{1 + (n // 28) % 12:02d}-{1 + n % 28:02d}",
            "phone": "",
            "kks_number": f"5264{n:012d}",
            "village_code": VILLAGE,
            "programs": "BPNT",
            "pkh_components": "",
        }
        for n in range(families)
    ]
    report = await import_beneficiary_records(sessionmaker, records_from_dicts(people), HASHER)
    assert report.ok, report.errors[:5]
    money = [
        {"nik": nik(n), "program": "BPNT", "period": f"2026-{month:02d}", "amount": "200000",
         "status": "disalurkan", "date": f"2026-{month:02d}-05"}
        for n in range(families)
        for month in range(1, MONTHS + 1)
    ]  # fmt: skip
    report = await import_disbursement_records(sessionmaker, records_from_dicts(money), HASHER)
    assert report.ok, report.errors[:5]
    async with sessionmaker() as session:
        by_hash = dict((await session.execute(select(Beneficiary.nik_hash, Beneficiary.id))).all())
    return [by_hash[HASHER.nik(nik(n))] for n in range(families)]


async def open_ewarongs(sessionmaker: async_sessionmaker[AsyncSession], agents: int) -> None:
    async with sessionmaker() as session, session.begin():
        session.add_all(
            EWarong(
                code=f"EW-BENCH-{a:03d}", name=f"e-Warong Bench {a}", village_code=VILLAGE,
                address="Jl. Raya Margaasih", latitude=-6.95, longitude=107.55, bank="BNI",
            )
            for a in range(agents)
        )  # fmt: skip


async def plan_round(
    sessionmaker: async_sessionmaker[AsyncSession],
    family_ids: list[int],
    agents: int,
    confirmations: int,
    label: str,
    start: int,
) -> list[list[Job]]:
    """The round's jobs per agent: agent a serves the families whose index is a mod agents.

    Shopping codes are issued beforehand (in bulk, outside the measurement), one per
    confirmation, as if each family had shown its code at the counter."""
    indexes = [(start + i) % len(family_ids) for i in range(confirmations)]
    with_code = [i for i in indexes if i % CODE_EVERY]
    now = utcnow()
    code_ids: dict[int, int] = {}
    if with_code:
        async with sessionmaker() as session, session.begin():
            rows = await session.execute(
                insert(ShoppingCode.__table__).returning(ShoppingCode.__table__.c.id),
                [
                    {
                        "beneficiary_id": family_ids[i],
                        "code_hash": HASHER.digest("shopping-code", f"{label}-{i}"),
                        "created_at": now,
                        "expires_at": now + timedelta(days=1),
                    }
                    for i in with_code
                ],
            )
            code_ids = dict(zip(with_code, rows.scalars(), strict=True))
    per_agent: list[list[Job]] = [[] for _ in range(agents)]
    for n, i in enumerate(indexes):
        agent = i % agents
        draft = RedemptionDraft(
            key=f"{label}-{n}",
            ewarong_code=f"EW-BENCH-{agent:03d}",
            agent_telegram_id=500_000 + agent,
            beneficiary_id=family_ids[i],
            lines=BASKETS[n % len(BASKETS)],
            shopping_code_id=code_ids.get(i),
            agent_attested=i not in code_ids,
            # Card sales (no code) under a cap they never reach: the cap's check is measured,
            # not its refusals.
            kks_month=KKS_MONTH,
            kks_cap=KKS_CAP,
        )
        per_agent[agent].append(Job(i, draft))
    return per_agent


# ---------------------------------------------------------------------------
# The two measurements


async def run_agents(
    per_agent: list[list[Job]], work: Callable[[Job], Awaitable[object]]
) -> tuple[float, list[object]]:
    """All agents at once, each working through its own jobs in order; (seconds, results)."""
    results: list[object] = []

    async def agent(jobs: list[Job]) -> None:
        for job in jobs:
            results.append(await work(job))

    started = time.perf_counter()
    await asyncio.gather(*(agent(jobs) for jobs in per_agent))
    return time.perf_counter() - started, results


async def confirmations(
    sessionmaker: async_sessionmaker[AsyncSession], per_agent: list[list[Job]]
) -> tuple[float, Counter[str]]:
    async def confirm(job: Job) -> ConfirmResult:
        async with sessionmaker() as session, session.begin():
            return (await redemptions.confirm(session, job.draft, utcnow())).result

    seconds, results = await run_agents(per_agent, confirm)
    return seconds, Counter(str(r) for r in results)


BARE_UPDATE = text("UPDATE bare_wallets SET balance = balance - 1 WHERE id = :id")


async def bare_updates(engine: AsyncEngine, per_agent: list[list[Job]]) -> float:
    async def update(job: Job) -> None:
        async with engine.begin() as conn:
            await conn.execute(BARE_UPDATE, {"id": job.family_index})

    seconds, _ = await run_agents(per_agent, update)
    return seconds


async def ledger_check(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """Every wallet equals the sum of its ledger; redemptions match their debits."""
    async with sessionmaker() as session:
        sums = (
            select(LedgerEntry.beneficiary_id, func.sum(LedgerEntry.amount).label("total"))
            .group_by(LedgerEntry.beneficiary_id)
            .subquery()
        )
        wrong = await session.scalar(
            select(func.count())
            .select_from(BpntWallet)
            .join(sums, sums.c.beneficiary_id == BpntWallet.beneficiary_id, isouter=True)
            .where(BpntWallet.balance != func.coalesce(sums.c.total, 0))
        )
        redemptions = await session.scalar(select(func.count()).select_from(Redemption))
        debits = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.kind == LedgerKind.REDEMPTION)
        )
    assert wrong == 0 and redemptions == debits, (wrong, redemptions, debits)
    return f"{redemptions} redemptions, every wallet equal to its ledger"


# ---------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> int:
    agents, n = args.agents, args.confirmations
    families = max(args.families, n)
    families += -families % agents  # every agent serves as many families
    # One connection per agent, for both measurements.
    engine = create_engine(args.database_url, pool_size=agents, max_overflow=0)
    sessionmaker = create_sessionmaker(engine)
    try:
        setup_started = time.perf_counter()
        await reset(engine, families)
        family_ids = await register_families(sessionmaker, families)
        await open_ewarongs(sessionmaker, agents)
        plans = [
            await plan_round(sessionmaker, family_ids, agents, n, f"r{r}", r * n)
            for r in range(args.rounds)
        ]
        warm = await plan_round(sessionmaker, family_ids, agents, 4 * agents, "warm", 0)
        async with engine.connect() as conn:
            version = await conn.scalar(text("SHOW server_version"))
        print(
            f"setup: {families} families (Rp{MONTHS * 200_000:,} each), {agents} e-Warongs, "
            f"{args.rounds * n} codes, in {time.perf_counter() - setup_started:.1f}s"
        )
        # Warm-up: every pooled connection open, statements prepared, caches filled.
        await confirmations(sessionmaker, warm)
        await bare_updates(engine, warm)

        rows: list[tuple[float, float]] = []
        cpu: dict[str, list[float]] = {"confirm": [], "bare": []}  # client CPU ms per op
        outcomes: Counter[str] = Counter()

        async def measure_confirmations(plan: list[list[Job]]) -> float:
            started = time.process_time()
            seconds, counts = await confirmations(sessionmaker, plan)
            cpu["confirm"].append((time.process_time() - started) * 1000 / n)
            outcomes.update(counts)
            return seconds

        async def measure_bare(plan: list[list[Job]]) -> float:
            started = time.process_time()
            seconds = await bare_updates(engine, plan)
            cpu["bare"].append((time.process_time() - started) * 1000 / n)
            return seconds

        for number, plan in enumerate(plans, start=1):
            if number % 2:
                confirm_seconds = await measure_confirmations(plan)
                bare_seconds = await measure_bare(plan)
            else:
                bare_seconds = await measure_bare(plan)
                confirm_seconds = await measure_confirmations(plan)
            confirm_rate, bare_rate = n / confirm_seconds, n / bare_seconds
            rows.append((confirm_rate, bare_rate))
            print(
                f"round {number}: confirmations {confirm_rate:6.0f}/s   "
                f"bare UPDATEs {bare_rate:6.0f}/s   ratio {confirm_rate / bare_rate:.3f}   "
                f"client CPU {cpu['confirm'][-1]:.2f} / {cpu['bare'][-1]:.2f} ms per op"
            )
        check = await ledger_check(sessionmaker)
    finally:
        await engine.dispose()

    confirm_median = statistics.median(r[0] for r in rows)
    bare_median = statistics.median(r[1] for r in rows)
    ratio = statistics.median(r[0] / r[1] for r in rows)
    verdict = "meets" if ratio >= 1 / 3 else "MISSES"
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, asyncpg "
        f"{asyncpg.__version__}, PostgreSQL {version}"
    )
    print(f"outcomes: {dict(outcomes)}; ledger: {check}")
    print(
        f"client (this Python process) CPU per op, median: confirmation "
        f"{statistics.median(cpu['confirm']):.2f} ms, bare {statistics.median(cpu['bare']):.2f} ms"
    )
    print(
        f"median of {len(rows)} rounds ({n} each, {agents} agents): "
        f"confirmations {confirm_median:.0f}/s, bare {bare_median:.0f}/s, "
        f"ratio {ratio:.3f} ({verdict} the aim of at least 1/3)"
    )
    if set(outcomes) != {str(ConfirmResult.CONFIRMED)}:
        print("warning: not every confirmation was CONFIRMED; the rate is not comparable")
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_URL
    )
    parser.add_argument("--confirmations", type=int, default=2000, help="per round")
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--families", type=int, default=4000)
    args = parser.parse_args(argv)
    url = make_url(args.database_url)
    if url.get_backend_name() != "postgresql":
        parser.error("the benchmark runs on PostgreSQL only")
    if "bench" not in (url.database or ""):
        parser.error(f"refusing to empty {url.database!r}: use a database named *bench*")
    if not 1 <= args.rounds <= 11 or args.agents < 1 or args.confirmations < args.agents:
        parser.error("need 1-11 rounds, at least one agent and a confirmation per agent")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(ensure_database(args.database_url))
    upgrade_database(args.database_url)  # Alembic runs its own event loop
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
