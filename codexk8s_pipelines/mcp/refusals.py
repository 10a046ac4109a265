"""A bounded audit of refused MCP calls: every refusal is counted, few are written one by one.

A call refused before it could run (its token does not verify, or its token or peer is over its rate) used to write
two `flow_events` rows, an append-only table: anyone who reaches the server could grow it as fast as they could call
(review 38, M1). Now a refusal opens a window per audit key and peer: that first one is audited whole, as any call is
(`mcp.tool.called`, `mcp.tool.failed`), so a single mistake reads as before; the refusals after it in the window are
counted by tool and reason, and the window's close writes one `mcp.tool.refusals` row with those counts. So a flood
writes at most three rows per peer and window, and no refusal goes unrecorded.

The windows are touched from the server's event loop (`record`) and from a worker thread (`close`), so a lock
guards them.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

REFUSALS_EVENT = "mcp.tool.refusals"
MAX_WINDOWS = 1_000
"""Windows open at once at most; refusals beyond that are counted in one overflow window, so many peer addresses (or
expired tokens of many runs) cannot grow the server's memory, or the rows a minute, without bound."""
MAX_NAMES = 10
"""Distinct tools and reasons counted by name in a window; the rest as `(other)` (tool names are the caller's)."""
OVERFLOW_PEER = "(overflow)"
OTHER = "(other)"


def _count(counter: Counter[str], name: str) -> None:
    counter[name if name in counter or len(counter) < MAX_NAMES else OTHER] += 1


def _counts(counter: Counter[str]) -> list[dict[str, Any]]:
    return [{"name": name, "count": count} for name, count in counter.most_common()]


@dataclass
class _Window:
    opened: float
    since: str
    refused: int = 0  # after the first, which was audited whole
    tools: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Summary:
    """One closed window's row: under `key` (the run, or `mcp:unverified`), the refusals after the first."""

    key: str
    payload: dict[str, Any]


class RefusalLog:
    """The open windows of one server; `seconds` is each window's length, `clock` a monotonic clock, and
    `overflow_key` where refusals are counted once `MAX_WINDOWS` windows are open."""

    def __init__(self, seconds: float, clock: Callable[[], float], overflow_key: str) -> None:
        self.seconds = seconds
        self.clock = clock
        self.overflow_key = overflow_key
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def record(self, key: str, peer: str, tool: str, reason: str) -> bool:
        """Count one refusal; True when it opened a window, and the caller should audit it whole.

        `reason` is a category ("rate limited", "token bad signature", ...), not the message: messages carry numbers and
        times, which would make every refusal a name of its own."""
        now = self.clock()
        with self._lock:
            window = self._windows.get((key, peer))
            if window is None and len(self._windows) >= MAX_WINDOWS:
                key, peer = self.overflow_key, OVERFLOW_PEER
                window = self._windows.get((key, peer))
            if window is None or (now - window.opened >= self.seconds and not window.refused):
                self._windows[(key, peer)] = _Window(now, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
                return True
            window.refused += 1
            _count(window.tools, tool)
            _count(window.reasons, reason)
            return False

    def close(self, *, everything: bool = False) -> list[Summary]:
        """The windows that have run their time (or all, when the server stops), as rows to write; a window whose
        first refusal was the only one needs no row of its own."""
        now = self.clock()
        closed: list[Summary] = []
        with self._lock:
            for (key, peer), window in list(self._windows.items()):
                if not everything and now - window.opened < self.seconds:
                    continue
                del self._windows[(key, peer)]
                if window.refused:
                    closed.append(Summary(key, self._payload(peer, window)))
        return closed

    def _payload(self, peer: str, window: _Window) -> dict[str, Any]:
        return {
            "peer": peer,
            "refused": window.refused,
            "since": window.since,
            "window_seconds": self.seconds,
            # Lists, not objects keyed by name: the names are the caller's text, and the audit's redaction masks the
            # value of any key that looks like a credential's name ("token ...").
            "tools": _counts(window.tools),
            "reasons": _counts(window.reasons),
        }
