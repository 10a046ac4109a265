"""Rate and concurrency bounds of the MCP server's callers (the numbers and their reasons: `limits.py`).

Two token buckets — one per verified token (keyed by its run), one per peer address for calls whose token does not
verify — and two caps on calls running at once: per token and for the whole server. A refused call costs nothing
but a counter (`refusals.py` bounds its audit): no thread, no database connection, no GitHub request.

The buckets and caps live on the server's event loop and are only touched from it, between awaits, so they need no
lock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from .limits import McpLimits

MAX_TRACKED = 10_000
"""Buckets kept at most; full ones (idle long enough to have refilled) are dropped first, and callers beyond that
share one overflow bucket, so many peer addresses cannot grow the server's memory."""
OVERFLOW_KEY = "(overflow)"


class Busy(Exception):
    """A call that found no free slot in time; the message is what the caller reads."""


def retry_after(seconds: float) -> int:
    """Whole seconds to tell a caller to wait, never zero (a 0 invites an immediate retry that fails again)."""
    return max(1, math.ceil(seconds))


@dataclass
class TokenBucket:
    """`capacity` calls at once, refilled at `rate` calls a second."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, now: float) -> float:
        """0 when a call may go now (and it is counted); else the seconds until one may. A refused call takes
        nothing, so a flood does not push its own wait further out."""
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.capacity


@dataclass
class Buckets:
    """A token bucket per key, created full."""

    per_minute: float
    burst: int
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def take(self, key: str, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            if len(self._buckets) >= MAX_TRACKED:
                key = OVERFLOW_KEY
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.per_minute / 60, self.burst, self.burst, now)
        return bucket.take(now)


@dataclass
class _Slots:
    semaphore: anyio.Semaphore
    users: int = 0


class Throttle:
    """The bounds of one server (see the module docstring)."""

    def __init__(self, limits: McpLimits) -> None:
        self.limits = limits
        self._calls = Buckets(limits.calls_per_minute, limits.call_burst)
        self._unverified = Buckets(limits.unverified_per_minute, limits.unverified_burst)
        self._running: dict[str, _Slots] = {}
        self._server: anyio.Semaphore | None = None

    def call_wait(self, run_key: str) -> float:
        """0, or how long the token of `run_key` must wait before its next call."""
        return self._calls.take(run_key, self.limits.clock())

    def unverified_wait(self, peer: str) -> float:
        """0, or how long `peer` must wait before another call whose token does not verify is answered with why."""
        return self._unverified.take(peer, self.limits.clock())

    def call_limited(self, wait: float) -> str:
        return (
            f"rate limited: this token made more than {self.limits.call_burst} calls at once or"
            f" {self.limits.calls_per_minute:g} a minute; retry after {retry_after(wait)} s"
        )

    def unverified_limited(self, wait: float) -> str:
        return (
            "rate limited: too many calls from this address whose token does not verify"
            f" ({self.limits.unverified_per_minute:g} a minute); retry after {retry_after(wait)} s with a valid token"
        )

    @asynccontextmanager
    async def slot(self, run_key: str) -> AsyncIterator[None]:
        """Run the body as one of at most `in_flight_per_token` calls of this token and `server_in_flight` calls of
        the server; waiting for both at most `in_flight_wait_seconds`, else `Busy` (raised before the body runs)."""
        limits = self.limits
        slots = self._running.get(run_key)
        if slots is None:
            slots = self._running[run_key] = _Slots(anyio.Semaphore(limits.in_flight_per_token))
        if self._server is None:
            self._server = anyio.Semaphore(limits.server_in_flight)
        server = self._server
        slots.users += 1
        try:
            deadline = anyio.current_time() + limits.in_flight_wait_seconds
            with anyio.move_on_at(deadline) as waited:
                await slots.semaphore.acquire()  # a cancelled acquire holds nothing (anyio hands the slot back)
            if waited.cancelled_caught:
                raise Busy(
                    f"rate limited: {limits.in_flight_per_token} calls of this token are already running and none"
                    f" finished within {limits.in_flight_wait_seconds:g} s; retry after"
                    f" {retry_after(limits.in_flight_wait_seconds)} s"
                )
            try:
                with anyio.move_on_at(deadline) as waited:
                    await server.acquire()
                if waited.cancelled_caught:
                    raise Busy(
                        f"rate limited: the server is busy ({limits.server_in_flight} calls running); retry after"
                        f" {retry_after(limits.in_flight_wait_seconds)} s"
                    )
                try:
                    yield
                finally:
                    server.release()
            finally:
                slots.semaphore.release()
        finally:
            slots.users -= 1
            if slots.users == 0 and self._running.get(run_key) is slots:
                del self._running[run_key]
