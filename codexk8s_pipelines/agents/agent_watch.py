"""A model endpoint that cannot be reached ends the run as `model_unreachable` within a bounded time, never as a
hang until the stage timeout.

Two guards, because the agents differ: Codex retries forever ("Reconnecting... waiting for network") even with
its retries set to 0, aider retries for 80 s and then exits 0, Claude Code gives up at once. So:

- `probe_endpoint`: before the agent starts, a TCP connect to the configured base URL (seconds, not minutes);
- `UnreachableWatch`: while it runs, the agent's own output; once it reports connection failures and no model
  answer for `grace_seconds`, the watch calls `on_expire` (the runner kills the agent) and keeps the cause.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from .egress import Endpoint
from .transcript import Transcript, read_transcript

PROBE_TIMEOUT_SECONDS = 5.0


def probe_endpoint(base_url: str | None, timeout: float = PROBE_TIMEOUT_SECONDS) -> str | None:
    """None when the endpoint accepts a connection (or none is configured), else why it does not."""
    if not base_url:
        return None
    try:
        endpoint = Endpoint.from_url(base_url)
    except ValueError:
        return f"{base_url}: not a valid port"
    if endpoint is None:
        return f"{base_url}: no host in the URL"
    host, port = endpoint.host, endpoint.port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} refused or did not answer within {timeout:g}s ({exc.strerror or exc})"


class UnreachableWatch:
    """Reads the agent's output lines as they come; fires `on_expire` when it is stuck on an unreachable model."""

    def __init__(
        self,
        kind: str,
        grace_seconds: float,
        on_expire: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.grace_seconds = grace_seconds
        self.on_expire = on_expire
        self.clock = clock
        self.cause: str | None = None
        self.fired = False
        self._answered = False
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def feed(self, line: str, one: Transcript | None = None) -> None:
        """`one`: the line already read as a transcript (`read_transcript(kind, [line])`), when the caller has it."""
        one = one if one is not None else read_transcript(self.kind, [line])
        with self._lock:
            if one.model_answered:
                self._answered = True
                self._cancel()
                return
            if one.unreachable and not self._answered and self._timer is None and not self.fired:
                self.cause = line.strip()[:300]
                self._timer = threading.Timer(self.grace_seconds, self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._answered:
                return
            self.fired = True
        self.on_expire()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        with self._lock:
            self._cancel()

    @property
    def verdict(self) -> str | None:
        """The cause when the watch stopped the agent, else None."""
        return (
            f"no model answer for {self.grace_seconds:g}s while the agent reported: {self.cause}"
            if self.fired
            else None
        )
