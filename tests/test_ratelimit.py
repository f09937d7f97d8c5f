"""The broadcast rate limiter: GCRA in memory (simulated time) and on real Redis.

The Redis tests use TEST_REDIS_URL (CI), or else a local Redis at db 13 when
REQUIRE_SERVICES is unset and it answers; without either only the memory tests run.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.ratelimit import MemoryRateLimiter, RedisRateLimiter, broadcast_rate, create_rate_limiter
from infra.settings import Settings

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/13"
TEST_PREFIX = "bansos-test:"


class FakeTime:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter must never ask for a zero or negative sleep"
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def _limiter(rate: float, burst: int = 1) -> tuple[MemoryRateLimiter, FakeTime]:
    fake = FakeTime()
    return MemoryRateLimiter(rate, burst, clock=fake.clock, sleep=fake.sleep), fake


def _max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most grants in any half-open window [t, t + window)."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= window - 1e-9:
            start += 1
        best = max(best, end - start + 1)
    return best


# ---------------------------------------------------------------------------
# In memory, simulated time.


@pytest.mark.parametrize(("rate", "burst", "count"), [(10, 1, 50), (25, 1, 100), (8, 5, 40)])
async def test_memory_takes_n_minus_burst_over_rate(rate: float, burst: int, count: int) -> None:
    limiter, fake = _limiter(rate, burst)
    start = fake.now
    for _ in range(count):
        await limiter.acquire()
    assert fake.now - start == pytest.approx((count - burst) / rate)
    # Each wait is one computed sleep, never a spin: one sleep per non-burst grant.
    assert len(fake.sleeps) == count - burst


async def test_memory_burst_is_free_then_steady() -> None:
    limiter, fake = _limiter(rate=4, burst=3)
    stamps = []
    for _ in range(7):
        await limiter.acquire()
        stamps.append(fake.now - 1000.0)
    assert stamps == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75, 1.0])


async def test_memory_penalize_delays_next_grant() -> None:
    limiter, fake = _limiter(rate=10)
    await limiter.acquire()
    granted = fake.now
    await limiter.penalize(2)
    await limiter.acquire()
    assert fake.now - granted == pytest.approx(2.0)
    # After the pause the steady rate resumes.
    await limiter.acquire()
    assert fake.now - granted == pytest.approx(2.1)


async def test_memory_penalize_leaves_no_burst_after_pause() -> None:
    limiter, fake = _limiter(rate=10, burst=5)
    await limiter.penalize(2)
    stamps = []
    for _ in range(3):
        await limiter.acquire()
        stamps.append(fake.now - 1000.0)
    assert stamps == pytest.approx([2.0, 2.1, 2.2])


async def test_memory_penalize_never_shortens_a_wait() -> None:
    limiter, fake = _limiter(rate=1)
    await limiter.penalize(5)
    await limiter.penalize(1)
    await limiter.penalize(0)
    await limiter.penalize(-3)
    await limiter.acquire()
    assert fake.now - 1000.0 == pytest.approx(5.0)


async def test_memory_penalize_while_waiting_extends_the_wait() -> None:
    fake = FakeTime()
    penalized = False

    async def sleep(seconds: float) -> None:
        nonlocal penalized
        if not penalized:  # a 429 arrives (at t=0.5) while the acquirer sleeps towards t=1
            penalized = True
            fake.now += 0.5
            await limiter.penalize(3)
            seconds -= 0.5
        await fake.sleep(seconds)

    limiter = MemoryRateLimiter(1, clock=fake.clock, sleep=sleep)
    await limiter.acquire()  # t=0; the next slot is t=1
    await limiter.acquire()
    assert fake.now - 1000.0 == pytest.approx(3.5)
    assert fake.sleeps == pytest.approx([0.5, 2.5])


@pytest.mark.parametrize(("rate", "burst"), [(8, 1), (10, 1), (16, 4)])
async def test_memory_concurrent_acquirers_never_exceed_rate(rate: float, burst: int) -> None:
    limiter, fake = _limiter(rate, burst)
    stamps: list[float] = []

    async def worker(sends: int) -> None:
        for _ in range(sends):
            await limiter.acquire()
            stamps.append(fake.now)

    await asyncio.gather(*(worker(n) for n in (7, 13, 5, 11, 9, 15)))
    assert len(stamps) == 60
    assert _max_in_window(stamps) <= rate + burst - 1
    assert max(stamps) - min(stamps) == pytest.approx((60 - burst) / rate)


def test_memory_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(0)
    with pytest.raises(ValueError):
        MemoryRateLimiter(-1)
    with pytest.raises(ValueError):
        MemoryRateLimiter(10, burst=0)


async def test_memory_real_clock_smoke() -> None:
    limiter = MemoryRateLimiter(200)
    start = time.monotonic()
    for _ in range(21):
        await limiter.acquire()
    assert time.monotonic() - start >= 20 / 200 - 0.005
    await limiter.close()


# ---------------------------------------------------------------------------
# Choosing the limiter and its rate.


def _settings(**values: object) -> Settings:
    values.setdefault("redis_url", None)
    return Settings(_env_file=None, **values)


def test_broadcast_rate_default_and_paid() -> None:
    assert broadcast_rate(_settings()) == 25.0
    assert broadcast_rate(_settings(broadcast_rate=12)) == 12.0
    assert broadcast_rate(_settings(broadcast_rate=12, paid_broadcast=True)) == 1000.0


async def test_create_picks_memory_without_redis() -> None:
    limiter = create_rate_limiter(_settings())
    assert isinstance(limiter, MemoryRateLimiter)
    assert limiter.rate == 25.0
    await limiter.close()


async def test_create_uses_paid_rate_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAID_BROADCAST", "true")
    monkeypatch.setenv("BROADCAST_RATE", "7")
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = Settings(_env_file=None)
    limiter = create_rate_limiter(settings)
    assert isinstance(limiter, MemoryRateLimiter)
    assert limiter.rate == 1000.0


# ---------------------------------------------------------------------------
# On real Redis.


def _local_redis_answers(url: str) -> bool:
    client = SyncRedis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


@pytest.fixture(scope="module")
def limiter_redis_url(redis_url: str | None) -> Iterator[str]:
    if redis_url:
        yield redis_url
        return
    if os.environ.get("REQUIRE_SERVICES"):
        pytest.skip("TEST_REDIS_URL is not set (and REQUIRE_SERVICES forbids a local Redis)")
    if not _local_redis_answers(LOCAL_REDIS_URL):
        pytest.skip("no Redis: set TEST_REDIS_URL or run one at " + LOCAL_REDIS_URL)
    yield LOCAL_REDIS_URL


@pytest.fixture
async def redis_pair(limiter_redis_url: str) -> AsyncIterator[tuple[Redis, Redis, str]]:
    """Two separate clients (two "workers") and a limiter name nobody else uses."""
    first = Redis.from_url(limiter_redis_url)
    second = Redis.from_url(limiter_redis_url)
    name = f"test-{uuid.uuid4().hex}"
    try:
        yield first, second, name
    finally:
        await first.delete(f"{TEST_PREFIX}ratelimit:{name}")
        await first.aclose()
        await second.aclose()


def _pair(
    pair: tuple[Redis, Redis, str], rate: float, burst: int = 1, batch: int = 1
) -> tuple[RedisRateLimiter, RedisRateLimiter]:
    first, second, name = pair
    return (
        RedisRateLimiter(first, name, rate, burst, prefix=TEST_PREFIX, batch=batch),
        RedisRateLimiter(second, name, rate, burst, prefix=TEST_PREFIX, batch=batch),
    )


async def _drain(
    limiters: list[RedisRateLimiter], count: int, callers: int = 2
) -> tuple[float, list[float]]:
    """`count` acquisitions spread over the limiters, `callers` concurrent callers each."""
    stamps: list[float] = []
    remaining = count

    async def caller(limiter: RedisRateLimiter) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await limiter.acquire()
            stamps.append(time.monotonic())

    start = time.monotonic()
    await asyncio.gather(*(caller(limiter) for limiter in limiters for _ in range(callers)))
    return time.monotonic() - start, stamps


async def test_redis_two_workers_share_one_limit(redis_pair: tuple[Redis, Redis, str]) -> None:
    a, b = _pair(redis_pair, rate=50)
    elapsed, stamps = await _drain([a, b], 60)
    assert len(stamps) == 60
    ideal = (60 - 1) / 50
    assert elapsed >= ideal - 0.01  # never faster than the shared limit (load only slows)
    assert _max_in_window(stamps) <= 50 + 1  # +1: client-side stamps jitter around the slots


async def test_redis_achieved_rate_matches_configured(
    redis_pair: tuple[Redis, Redis, str],
) -> None:
    a, b = _pair(redis_pair, rate=100)
    _, stamps = await _drain([a, b], 100, callers=1)
    achieved = (len(stamps) - 1) / (max(stamps) - min(stamps))
    # Never over the limit. How far under depends on the machine's load (a wake-up late
    # by a millisecond loses that slot at burst 1), so that side is printed, not asserted.
    print(f"\nachieved {achieved:.1f}/s of 100/s")
    assert achieved / 100 <= 1.02, achieved


async def test_redis_reserved_slots_keep_the_shared_limit_with_fewer_round_trips(
    redis_pair: tuple[Redis, Redis, str],
) -> None:
    a, b = _pair(redis_pair, rate=100, burst=3, batch=5)
    calls = 0
    for limiter in (a, b):
        original = limiter._eval

        async def counted(*args, _original=original):
            nonlocal calls
            calls += 1
            return await _original(*args)

        limiter._eval = counted
    elapsed, stamps = await _drain([a, b], 150)
    assert len(stamps) == 150
    assert elapsed >= (150 - 3 - 5) / 100  # never faster than the shared schedule allows
    assert _max_in_window(stamps) <= 100 + 3 + 1
    assert calls <= 150 / 5 + 10  # about one round trip per five sends
    # a 429 drops what was reserved before it: nothing goes out during the pause
    await a.acquire()
    start = time.monotonic()
    await a.penalize(0.3)
    await a.acquire()
    await b.acquire()
    assert time.monotonic() - start >= 0.29


async def test_redis_burst_then_steady(redis_pair: tuple[Redis, Redis, str]) -> None:
    a, b = _pair(redis_pair, rate=20, burst=5)
    sleeps: list[float] = []

    async def recorded(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(seconds)

    a._sleep = b._sleep = recorded
    start = time.monotonic()
    for limiter in (a, b, a, b, a):
        await limiter.acquire()
    assert sleeps == []  # the burst is granted at once, without waiting
    for limiter in (b, a, b, a, b):
        await limiter.acquire()
    elapsed = time.monotonic() - start
    assert elapsed >= 5 / 20 - 0.01 and len(sleeps) >= 5


async def test_redis_penalize_from_one_worker_delays_the_other(
    redis_pair: tuple[Redis, Redis, str],
) -> None:
    a, b = _pair(redis_pair, rate=100)
    await b.acquire()
    start = time.monotonic()
    await a.penalize(0.3)
    await b.acquire()
    elapsed = time.monotonic() - start
    assert elapsed >= 0.29
    # A shorter later penalty does not shorten the pause already set.
    await a.penalize(0.25)
    await b.penalize(0.05)
    start = time.monotonic()
    await a.acquire()
    assert time.monotonic() - start >= 0.2


async def test_redis_key_and_expiry(redis_pair: tuple[Redis, Redis, str]) -> None:
    first, _, name = redis_pair
    a, _ = _pair(redis_pair, rate=2)
    assert a.key == f"{TEST_PREFIX}ratelimit:{name}"
    await a.acquire()
    ttl_ms = await first.pttl(a.key)
    assert 0 < ttl_ms <= 500 + 1000 + 5  # a bit past the TAT, never forever
    default = RedisRateLimiter(first, "broadcast", 25)
    assert default.key == "bansos:ratelimit:broadcast"


async def test_redis_noscript_fallback_after_script_flush(
    redis_pair: tuple[Redis, Redis, str], limiter_redis_url: str
) -> None:
    first, _, _ = redis_pair
    a, b = _pair(redis_pair, rate=100)
    await a.acquire()
    await a.penalize(0.01)
    # SCRIPT FLUSH is server-wide: only ever on the test Redis (TEST_REDIS_URL or local db 13).
    assert limiter_redis_url in (os.environ.get("TEST_REDIS_URL"), LOCAL_REDIS_URL)
    await first.script_flush()
    start = time.monotonic()
    await b.penalize(0.1)  # NOSCRIPT -> EVAL
    await a.acquire()  # NOSCRIPT -> EVAL
    assert time.monotonic() - start >= 0.09
    await b.acquire()  # the script is cached again by EVAL


async def test_create_uses_given_redis(redis_pair: tuple[Redis, Redis, str]) -> None:
    first, _, _ = redis_pair
    limiter = create_rate_limiter(_settings(paid_broadcast=True), first, name="x")
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.rate == 1000.0
    assert limiter.key == "bansos:ratelimit:x"
    await limiter.close()  # the caller's client stays open
    assert await first.ping()


async def test_create_from_redis_url_owns_its_client(limiter_redis_url: str) -> None:
    limiter = create_rate_limiter(_settings(redis_url=limiter_redis_url), name=uuid.uuid4().hex)
    assert isinstance(limiter, RedisRateLimiter)
    assert limiter.rate == 25.0
    await limiter.acquire()
    await limiter.close()
    cleanup = Redis.from_url(limiter_redis_url)
    await cleanup.delete(limiter.key)
    await cleanup.aclose()
