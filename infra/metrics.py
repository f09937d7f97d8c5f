"""Prometheus metrics for webhook and worker processes (`GET /metrics`).

Each process exposes its own counters; Prometheus scrapes every process and sums.
Labels never carry personal data: update types, outcomes, nothing about people.
The open-referrals gauge is read from the database at scrape time.
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.broadcasts.store import Outcome

log = logging.getLogger(__name__)

UPDATES = Counter("bansos_updates_total", "Updates handled, by type.", ["type"])
HANDLER_SECONDS = Histogram(
    "bansos_handler_seconds",
    "Time to handle one update, end to end through the middlewares.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter("bansos_update_errors_total", "Updates whose handling raised an error.")
BROADCAST_MESSAGES = Counter(
    "bansos_broadcast_messages_total", "Broadcast deliveries, by outcome.", ["outcome"]
)
REDEMPTIONS = Counter("bansos_redemptions_total", "Confirmed BPNT redemptions.")
OPEN_REFERRALS = Gauge("bansos_open_referrals", "Napza referrals not yet closed.")

for _outcome in Outcome:
    BROADCAST_MESSAGES.labels(outcome=_outcome.value)


def observe_broadcast(outcome: Outcome) -> None:
    BROADCAST_MESSAGES.labels(outcome=outcome.value).inc()


def metrics_handler(sessionmaker: async_sessionmaker[AsyncSession]):
    """An aiohttp handler for GET /metrics that refreshes the database gauges first."""
    from services import stats

    async def handle(request: web.Request) -> web.Response:
        try:
            async with sessionmaker() as session:
                OPEN_REFERRALS.set(await stats.open_referrals(session))
        except Exception as error:  # the counters are still worth serving
            log.warning("metrics: database gauge failed: %s", type(error).__name__)
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


async def serve(
    port: int, sessionmaker: async_sessionmaker[AsyncSession], host: str = "0.0.0.0"
) -> web.AppRunner:
    """A small server with GET /metrics (for `bansos-bot worker`); returns its runner."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(sessionmaker))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics on %s:%s/metrics", host, port)
    return runner
