"""Paces the service-comment edits of `run_status_report`: one run's edits one at a time, at most one an interval,
and the newest status always the one left on GitHub.

Every status is audited when it is reported (tools.py); only the comment is paced. Before, each report read and
edited the comment at once: 100 concurrent reports made 225 GitHub requests on the platform's shared credential,
and their unserialised find-or-create recorded the comment 26 times (review 38, M1). Now:

- a run's comment is published by one caller at a time (the others leave their status as pending and return);
- an edit starts at most once every `interval` seconds per run: the first report of a quiet run is shown at once,
  and a report inside the interval becomes the run's pending status, replacing an older pending one;
- the server's housekeeping publishes a run's pending status as soon as its interval allows (a trailing edit), and
  everything still pending when the server stops, so the comment always ends on the newest status — the humans on
  the PR see what the agent said last, with the time it said it, at most one interval late;
- "newest" is the audit's order (the `run.agent.status_reported` row's id), so the comment and the trail agree even
  when reports race: a report older than one already shown or pending is recorded only.

The state is per server process; the tool bodies run in worker threads, hence the lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
FLUSH_POLL_SECONDS = 0.05


@dataclass
class _Run(Generic[T]):
    last_start: float | None = None  # when the last edit started (the pacer's clock)
    publishing: bool = False
    pending: tuple[int, T] | None = None  # (audit order, what to publish)
    shown: int | None = None  # audit order of the status published last (or being published)

    def newest(self) -> int | None:
        orders = [o for o in (self.shown, self.pending[0] if self.pending else None) if o is not None]
        return max(orders, default=None)


class StatusPacer(Generic[T]):
    """`publish(update)` edits (or starts) a run's comment and says how; this decides when it is called."""

    def __init__(
        self,
        publish: Callable[[T], dict[str, Any]],
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publish = publish
        self.interval = interval
        self.clock = clock
        self._runs: dict[str, _Run[T]] = {}
        self._lock = threading.Lock()

    def report(self, key: str, order: int, update: T) -> dict[str, Any]:
        """Show `update` (audit order `order`) on run `key`'s comment now if its interval allows and no other edit
        of it is running, else keep it as the run's pending status; returns what happened to the comment."""
        with self._lock:
            run = self._runs.setdefault(key, _Run())
            newest = run.newest()
            if newest is not None and order < newest:
                return {"updated": False, "reason": "a newer status of this run is already shown or about to be"}
            run.pending = (order, update)
            wait = self._wait(run, self.clock())
            if run.publishing or wait > 0:
                return self._deferred(wait if wait > 0 else self.interval)
            taken = self._start(run)
        return self._publish(run, taken)

    def publish_due(self, *, everything: bool = False) -> int:
        """Publish each run's pending status whose interval has passed (all of them when `everything`, as the server
        stops); forget quiet runs. Returns how many edits were made; failures are logged, not raised."""
        due: list[tuple[_Run[T], tuple[int, T]]] = []
        with self._lock:
            now = self.clock()
            for key, run in list(self._runs.items()):
                if run.publishing:
                    continue
                if run.pending is not None and (everything or self._wait(run, now) <= 0):
                    due.append((run, self._start(run)))
                elif run.pending is None and self._wait(run, now) <= 0:
                    del self._runs[key]
        for run, taken in due:
            try:
                self._publish(run, taken)
            except Exception as exc:  # the status is audited already; the comment is best effort
                logger.warning("could not show a held-back agent status on GitHub: %s", type(exc).__name__)
        return len(due)

    def flush(self, timeout: float) -> None:
        """Publish everything pending, waiting (at most `timeout` seconds) for edits already running."""
        deadline = time.monotonic() + timeout
        while True:
            self.publish_due(everything=True)
            with self._lock:
                left = any(r.pending is not None for r in self._runs.values())
            if not left or time.monotonic() >= deadline:
                return
            time.sleep(FLUSH_POLL_SECONDS)

    def pending(self) -> int:
        """How many runs have a status waiting for their comment (for tests and logs)."""
        with self._lock:
            return sum(1 for r in self._runs.values() if r.pending is not None)

    # -- internals ---------------------------------------------------------------------------------------------------
    def _wait(self, run: _Run[T], now: float) -> float:
        return 0.0 if run.last_start is None else run.last_start + self.interval - now

    def _start(self, run: _Run[T]) -> tuple[int, T]:
        """Take the pending status for publishing (under the lock)."""
        assert run.pending is not None
        taken, run.pending = run.pending, None
        run.publishing, run.last_start, run.shown = True, self.clock(), taken[0]
        return taken

    def _publish(self, run: _Run[T], taken: tuple[int, T]) -> dict[str, Any]:
        try:
            return self.publish(taken[1])
        finally:
            with self._lock:
                run.publishing = False

    def _deferred(self, wait: float) -> dict[str, Any]:
        seconds = max(1, math.ceil(wait))
        return {
            "updated": False,
            "deferred": True,
            "within_seconds": seconds,
            "reason": (
                f"the service comment is edited at most once every {self.interval:g} s; it will show this status in"
                f" about {seconds} s, unless a newer one replaces it first (every status is audited now)"
            ),
        }
