"""Rate limits and fault injection for the Bot API side.

:class:`RateLimiter` keeps Telegram's per-chat and global token buckets
(:class:`TokenBucket`, settings in :class:`RateLimits`) and refuses message-sending
calls over them with a 429; :class:`FaultInjector` holds the :class:`Fault` rules the
control API adds to fail and/or delay chosen calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any

from sandbox.emulator.protocol import ApiError, too_many_requests

# --------------------------------------------------------------------------- rate limits


@dataclass
class TokenBucket:
    """Token bucket: ``burst`` tokens, refilled at ``rate`` tokens per second."""

    rate: float
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; return 0 on success, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def give_back(self) -> None:
        """Return a token taken for a request that was refused elsewhere."""
        self.tokens = min(self.burst, self.tokens + 1)


@dataclass
class RateLimits:
    """Rate-limit settings; a ``None`` rate switches that limit off."""

    enabled: bool = True
    global_rate: float | None = 30.0
    global_burst: float = 30.0
    per_chat_rate: float | None = 3.0
    per_chat_burst: float = 50.0


class RateLimiter:
    """Per-chat and global token buckets for message-sending methods."""

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.limits = limits
        self.configure()

    def configure(self, **changes: Any) -> RateLimits:
        """Apply setting changes and start every bucket full again."""
        for name, value in changes.items():
            if not hasattr(self.limits, name):
                raise ValueError(f"unknown rate-limit setting {name!r}")
            setattr(self.limits, name, value)
        for name in ("global_rate", "per_chat_rate"):
            rate = getattr(self.limits, name)
            if rate is not None and rate <= 0:
                raise ValueError(f"{name} must be positive or null")
        self._global = self._new_bucket(self.limits.global_rate, self.limits.global_burst)
        self._chats: dict[int, TokenBucket] = {}
        return self.limits

    def _new_bucket(self, rate: float | None, burst: float) -> TokenBucket | None:
        """Return a full bucket, or None when the rate is switched off."""
        if rate is None:
            return None
        return TokenBucket(rate, burst, burst, self.clock())

    def acquire(self, chat_id: int, *, count_global: bool) -> None:
        """Spend a token for ``chat_id`` (and globally) or raise a 429 ApiError."""
        if not self.limits.enabled:
            return
        now = self.clock()
        chat = self._chats.get(chat_id)
        if chat is None and self.limits.per_chat_rate is not None:
            chat = self._chats[chat_id] = self._new_bucket(
                self.limits.per_chat_rate, self.limits.per_chat_burst
            )
        wait = chat.take(now) if chat else 0.0
        if wait:
            raise too_many_requests(wait)
        if count_global and self._global is not None:
            wait = self._global.take(now)
            if wait:
                if chat:
                    chat.give_back()
                raise too_many_requests(wait)


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A fault-injection rule: fail and/or delay the matching Bot API calls."""

    status: int | None = None
    retry_after: int = 1
    description: str | None = None
    delay: float = 0.0
    remaining: int | None = None
    until: float | None = None
    methods: frozenset[str] | None = None

    def applies_to(self, method: str) -> bool:
        """Say whether the rule covers ``method`` (default: every method but getUpdates)."""
        if self.methods is None:
            return method != "getupdates"
        return method in self.methods

    def expired(self, now: float) -> bool:
        """Say whether the rule has used up its count or its time window."""
        return (self.remaining is not None and self.remaining <= 0) or (
            self.until is not None and now >= self.until
        )

    def error(self) -> ApiError | None:
        """Return the error this rule injects, if it injects one."""
        if self.status is None:
            return None
        if self.status == 429:
            return too_many_requests(self.retry_after)
        text = self.description or HTTPStatus(self.status).phrase
        return ApiError(self.status, text)

    def view(self) -> dict[str, Any]:
        """Return the rule as JSON for the control API."""
        data = asdict(self)
        data["methods"] = sorted(self.methods) if self.methods is not None else None
        return data


class FaultInjector:
    """Holds fault rules and hands out the one that applies to each call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.rules: list[Fault] = []

    def add(self, spec: dict[str, Any]) -> Fault:
        """Add a rule from a control-API spec (status, count, seconds, delay, methods, ...)."""
        status = spec.get("status")
        delay = float(spec.get("delay") or 0)
        if status is None and not delay:
            raise ValueError("a fault needs a status and/or a delay")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("status must be an HTTP error status 400-599")
        count, seconds = spec.get("count"), spec.get("seconds")
        if count is None and seconds is None:
            count = 1
        methods = spec.get("methods")
        fault = Fault(
            status=status,
            retry_after=int(spec.get("retry_after") or 1),
            description=spec.get("description"),
            delay=delay,
            remaining=int(count) if count is not None else None,
            until=self.clock() + float(seconds) if seconds is not None else None,
            methods=frozenset(m.lower() for m in methods) if methods is not None else None,
        )
        self.rules.append(fault)
        return fault

    def active(self) -> list[Fault]:
        """Drop used-up and timed-out rules and return the remaining ones."""
        now = self.clock()
        self.rules = [rule for rule in self.rules if not rule.expired(now)]
        return self.rules

    def take(self, method: str) -> Fault | None:
        """Return (and count) the first live rule matching ``method``."""
        for rule in self.active():
            if rule.applies_to(method.lower()):
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None
