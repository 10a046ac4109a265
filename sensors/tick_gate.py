"""What every GitHub request of an intake tick asks first: is its credential rate limited, is the tick still waiting.

GitHub counts its rate limits per credential (a token, an App's installation), not per repository: once it refused
one request, every other repository read with that credential would be refused too, and asking them anyway only
adds refused requests (a secondary limit grows longer with them). And a tick that stopped waiting for a slow
repository must not have that repository's worker go on reading GitHub for a tick that has already ended.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime

from codexk8s_pipelines.github.rate_limit import RateLimit, RateLimitWait


class TickOver(RuntimeError):
    """The tick no longer waits for this repository: its worker stops at its next request, its work is dropped and
    its cursor left as it was, so the next tick decides it again (run keys make that idempotent)."""


class TickGate:
    """Shared by a tick's workers (thread-safe): the credentials' rate limits in force, and whether the tick is over."""

    def __init__(self, now: datetime, limits: Mapping[str, RateLimit]) -> None:
        self._lock = threading.Lock()
        self._limits = {credential: limit for credential, limit in limits.items() if limit.resume_at > now}
        self._over = threading.Event()

    def check(self, credential: str) -> None:
        """Before a request with `credential`: `TickOver` once the tick stopped waiting, `RateLimitWait` while the
        credential is rate limited."""
        if self._over.is_set():
            raise TickOver("the tick stopped waiting for this repository")
        limit = self.limit(credential)
        if limit is not None:
            raise RateLimitWait(limit)

    def limit(self, credential: str) -> RateLimit | None:
        with self._lock:
            return self._limits.get(credential)

    def limited(self, credential: str, limit: RateLimit) -> None:
        """GitHub refused a request with `credential` until `limit.resume_at` (the later of two refusals holds)."""
        with self._lock:
            known = self._limits.get(credential)
            if known is None or limit.resume_at > known.resume_at:
                self._limits[credential] = limit

    def limits(self) -> dict[str, RateLimit]:
        with self._lock:
            return dict(self._limits)

    def stop(self) -> None:
        """The tick stops waiting: every request still to come from its workers is refused (`TickOver`)."""
        self._over.set()
