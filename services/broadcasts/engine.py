"""The broadcast delivery engine, run by `bansos-bot worker` (in-process when embedded).

Each worker process runs one `BroadcastEngine`: it starts broadcasts whose time has
come (planning their chunks), then keeps up to `broadcast_concurrency` chunks in
flight, each walked in Telegram id order. Every send first takes a token from the
global rate limiter (Redis GCRA shared by all workers, or in-process), and every
outcome is recorded at once with the chunk's cursor, under the chunk's lease, so a
killed worker's chunk is taken over where it stopped (see `services.broadcasts.store`).

Outcomes of one send, as the `send` callable reports them:
- `RetryLater(seconds)` (Telegram's 429): the whole fleet pauses via the limiter's
  `penalize`, and the same recipient is tried again;
- `Blocked` (403): the account is marked and left out of later broadcasts;
- `Permanent` (400: chat not found...): recorded as failed at once;
- `Transient` (5xx, network, timeouts): retried with exponential backoff, then
  recorded as failed.

This module never imports aiogram: `tg.broadcast_sender.BotApiSender` is the `send`
(copyMessage as one lean JSON POST) and `tg.notify.broadcasts` the `report`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)

from infra.ratelimit import RateLimiter
from infra.settings import Settings
from models import Broadcast
from models.enums import BroadcastStatus
from services.broadcasts import store as broadcasts
from services.broadcasts.store import Claim, Outcome, Recipient

log = logging.getLogger("bansos.broadcast")

Clock = Callable[[], datetime]


class DeliveryError(Exception):
    """Why one message could not be delivered."""


class RetryLater(DeliveryError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class Blocked(DeliveryError):
    pass


class Permanent(DeliveryError):
    pass


class Transient(DeliveryError):
    pass


# (chat_id, from_chat_id, message_id): copy one message to one recipient.
Send = Callable[[int, int, int], Awaitable[None]]
# (broadcast_id, final): show the admin the progress, or the final report.
Report = Callable[[int, bool], Awaitable[None]]
# (outcome): for metrics.
Observe = Callable[[Outcome], None]


@dataclass(frozen=True)
class EngineConfig:
    concurrency: int = 8
    chunk_size: int = 5000
    page_size: int = 200
    lease: timedelta = timedelta(seconds=30)
    report_every: timedelta = timedelta(seconds=5)
    poll_seconds: float = 1.0
    retries: int = 3
    backoff_seconds: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineConfig:
        return cls(
            concurrency=max(settings.broadcast_concurrency, 1),
            chunk_size=max(settings.broadcast_chunk_size, 1),
            page_size=min(200, max(settings.broadcast_chunk_size, 1)),
            lease=timedelta(seconds=settings.broadcast_lease_seconds),
            report_every=timedelta(seconds=settings.broadcast_progress_seconds),
        )


def create_progress_engine(database_url: str, concurrency: int) -> AsyncEngine:
    """An engine for the per-message progress writes. On PostgreSQL its sessions do not
    wait for the WAL flush (synchronous_commit off): a killed worker loses nothing it
    recorded; only a crash of PostgreSQL itself could lose the last fraction of a second,
    whose recipients would then get the message again."""
    from infra.db import create_engine

    if database_url.startswith("postgresql"):
        return create_engine(
            database_url,
            pool_size=concurrency + 2,
            connect_args={"server_settings": {"synchronous_commit": "off"}},
        )
    return create_engine(database_url)


STATUS_CHECK = timedelta(seconds=2)


@dataclass
class _ChunkRun:
    """A chunk being delivered: when its lease was last renewed and its broadcast's
    status last checked."""

    claim: Claim
    renewed_at: datetime
    checked_at: datetime
    conn: AsyncConnection


class LeaseLost(Exception):
    """Another worker took the chunk over (this one was too slow): stop at once."""


class BroadcastEngine:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        send: Send,
        limiter: RateLimiter,
        report: Report,
        clock: Clock,
        config: EngineConfig,
        *,
        observe: Observe | None = None,
        owner: str | None = None,
        progress: AsyncEngine | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        # Where per-message progress is written (see `create_progress_engine`).
        self.progress: AsyncEngine = progress or sessionmaker.kw["bind"]
        self.send = send
        self.limiter = limiter
        self.report = report
        self.clock = clock
        self.config = config
        self.observe = observe
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    # ----------------------------------------------------------------- the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Start due broadcasts and deliver chunks until `stop` is set; never dies on an
        error (logged by type only: messages may hold data). On stop, chunks in flight
        are given back so another worker continues them without waiting for the lease."""
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except Exception as error:
                    log.warning("broadcast step failed: %s", type(error).__name__)
                self._wake.clear()
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED),
                        self.config.poll_seconds,
                    )
                for waiter in waits:
                    waiter.cancel()
        finally:
            await self.shutdown()

    async def step(self) -> None:
        """One pass: start due broadcasts, then fill the free delivery slots."""
        now = self.clock()
        async with self.sessionmaker() as session, session.begin():
            started = await broadcasts.start_due(session, now, self.config.chunk_size)
        for broadcast_id in started:
            log.info("broadcast %s started", broadcast_id)
            await self._report(broadcast_id, final=False)
        async with self.sessionmaker() as session, session.begin():
            finished = await broadcasts.finish_complete(session, now)
        for broadcast_id in finished:
            log.info("broadcast %s done", broadcast_id)
            await self._report(broadcast_id, final=True)
        while len(self._tasks) < self.config.concurrency:
            async with self.sessionmaker() as session, session.begin():
                claim = await broadcasts.claim_chunk(
                    session, self.owner, self.clock(), self.config.lease, skip=list(self._tasks)
                )
            if claim is None:
                break
            task = asyncio.create_task(self._run_chunk(claim))
            self._tasks[claim.chunk_id] = task
            task.add_done_callback(lambda _t, chunk=claim.chunk_id: self._done(chunk))

    def _done(self, chunk_id: int) -> None:
        self._tasks.pop(chunk_id, None)
        self._wake.set()

    async def shutdown(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Release the limiter and the progress engine (when it is the engine's own)."""
        await self.limiter.close()
        close_sender = getattr(self.send, "close", None)
        if close_sender is not None:
            await close_sender()
        if self.progress is not self.sessionmaker.kw.get("bind"):
            await self.progress.dispose()

    async def run_until_idle(self, limit_seconds: float = 60.0) -> None:
        """Deliver everything that is due now, then return (for tests and the sandbox)."""
        async with asyncio.timeout(limit_seconds):
            while True:
                await self.step()
                if not self._tasks:
                    return
                await asyncio.wait(list(self._tasks.values()), return_when=asyncio.FIRST_COMPLETED)

    # ----------------------------------------------------------------- one chunk

    async def _run_chunk(self, claim: Claim) -> None:
        give_back = True
        try:
            done = await self._deliver_chunk(claim)
            give_back = False
            async with self.sessionmaker() as session, session.begin():
                await broadcasts.release(session, claim, self.owner, done=done)
                finished = done and await broadcasts.finish_if_complete(
                    session, claim.broadcast_id, self.clock()
                )
            if finished:
                log.info("broadcast %s done", claim.broadcast_id)
                await self._report(claim.broadcast_id, final=True)
        except LeaseLost:
            give_back = False
            log.warning("broadcast chunk %s was taken over by another worker", claim.chunk_id)
        except Exception as error:
            log.warning("broadcast chunk %s stopped: %s", claim.chunk_id, type(error).__name__)
        finally:
            if give_back:
                with contextlib.suppress(Exception):
                    async with self.sessionmaker() as session, session.begin():
                        await broadcasts.release(session, claim, self.owner, done=False)

    async def _deliver_chunk(self, claim: Claim) -> bool:
        """Deliver the chunk from its cursor; True when it is finished, False when the
        broadcast stopped running (paused or cancelled: checked every page and every
        STATUS_CHECK, so a pause takes effect within seconds at any rate)."""
        async with self.progress.connect() as conn:
            # One connection per chunk, in autocommit: recording a sent message is then
            # a single statement, one round trip, with no pool checkout per message.
            autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
            run = _ChunkRun(claim, self.clock(), self.clock(), autocommit)
            return await self._deliver_pages(run)

    async def _deliver_pages(self, run: _ChunkRun) -> bool:
        claim = run.claim
        cursor = claim.cursor
        while True:
            async with self.sessionmaker() as session:
                broadcast = await session.get(Broadcast, claim.broadcast_id)
                if broadcast is None or broadcast.status != BroadcastStatus.RUNNING:
                    return False
                page = await broadcasts.next_page(
                    session, broadcast, claim, cursor, self.config.page_size
                )
                session.expunge(broadcast)
            run.checked_at = self.clock()
            if not page:
                return True
            for recipient in page:
                if not await self._still_running(run):
                    return False
                outcome, error = await self._deliver(run, broadcast, recipient)
                await self._record(run, recipient, outcome, error)
                run.renewed_at = self.clock()  # recording renews the lease
                cursor = recipient.telegram_id
            await self._maybe_report(claim.broadcast_id)

    async def _still_running(self, run: _ChunkRun) -> bool:
        if self.clock() - run.checked_at < STATUS_CHECK:
            return True
        run.checked_at = self.clock()
        async with self.sessionmaker() as session:
            status = await session.scalar(
                select(Broadcast.status).where(Broadcast.id == run.claim.broadcast_id)
            )
        return status == BroadcastStatus.RUNNING

    async def _keep_lease(self, run: _ChunkRun) -> None:
        """Renew the lease when a third of it has passed without a recorded delivery
        (a long 429 pause, retries): a send is never made on a lease that ran out."""
        if self.clock() - run.renewed_at > self.config.lease / 3:
            await self._renew(run.claim)
            run.renewed_at = self.clock()

    async def _deliver(
        self, run: _ChunkRun, broadcast: Broadcast, recipient: Recipient
    ) -> tuple[Outcome, str | None]:
        message_id = broadcasts.version_for(broadcast, recipient.locale)
        attempts = 0
        while True:
            await self.limiter.acquire()
            await self._keep_lease(run)
            try:
                await self.send(recipient.telegram_id, broadcast.source_chat_id, message_id)
            except RetryLater as error:
                await self.limiter.penalize(error.seconds)
                continue
            except Blocked:
                return Outcome.BLOCKED, None
            except Permanent as error:
                return Outcome.FAILED, str(error)
            except Transient as error:
                attempts += 1
                if attempts > self.config.retries:
                    return Outcome.FAILED, str(error)
                await asyncio.sleep(self.config.backoff_seconds * 2 ** (attempts - 1))
                continue
            return Outcome.SENT, None

    async def _record(
        self, run: _ChunkRun, recipient: Recipient, outcome: Outcome, error: str | None
    ) -> None:
        args = (
            run.claim, self.owner, recipient.telegram_id, outcome, self.clock(), self.config.lease,
        )  # fmt: skip
        if outcome is Outcome.SENT:  # one statement on the chunk's autocommit connection
            held = await broadcasts.record_delivery(run.conn, *args)
        else:  # a block or failure writes more rows: one transaction
            async with self.progress.begin() as conn:
                held = await broadcasts.record_delivery(conn, *args, error)
        if self.observe is not None:
            self.observe(outcome)
        if not held:
            raise LeaseLost

    async def _renew(self, claim: Claim) -> None:
        async with self.sessionmaker() as session, session.begin():
            if not await broadcasts.renew(
                session, claim, self.owner, self.clock(), self.config.lease
            ):
                raise LeaseLost

    async def _maybe_report(self, broadcast_id: int) -> None:
        async with self.sessionmaker() as session, session.begin():
            due = await broadcasts.claim_progress_report(
                session, broadcast_id, self.clock(), self.config.report_every
            )
        if due:
            await self._report(broadcast_id, final=False)

    async def _report(self, broadcast_id: int, *, final: bool) -> None:
        try:
            await self.report(broadcast_id, final)
        except Exception as error:
            log.warning("broadcast %s report failed: %s", broadcast_id, type(error).__name__)
