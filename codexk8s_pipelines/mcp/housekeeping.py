"""What the MCP server does besides answering calls: write the closed refusal windows (`refusals.py`) and make
the service-comment edits the pacer held back (`status_pacing.py`), every few seconds while it runs and once more
as it stops, so neither a counted refusal nor an agent's last status is lost with the process.

It runs as the server's lifespan: the SDK enters that once per server (streamable HTTP, stdio) or per in-process
client (tests), and leaves it on shutdown (uvicorn's, after the last request).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import anyio.to_thread

from ..store import PlatformStore
from .refusals import REFUSALS_EVENT, RefusalLog
from .status_pacing import StatusPacer

logger = logging.getLogger(__name__)

FINAL_FLUSH_SECONDS = 10.0
"""The longest the server's stop waits for the last writes and edits (Kubernetes' grace period is 30 s)."""


class Housekeeping:
    """The periodic and final writes of one server."""

    def __init__(
        self, store: Callable[[], PlatformStore], refusals: RefusalLog, pacer: StatusPacer[Any], seconds: float
    ) -> None:
        self._store = store  # a callable: the store is only built (from the URL) when there is something to write
        self.refusals = refusals
        self.pacer = pacer
        self.seconds = seconds

    def tick(self, *, final: bool = False) -> None:
        """Write the refusal windows that closed, and publish the statuses whose interval allows (all, when final).
        Runs in a worker thread; failures are logged: the next tick (or the logs) still has them."""
        for summary in self.refusals.close(everything=final):
            payload = summary.payload
            logger.warning(
                "MCP: %d more calls refused for %s from %s in %g s: %s",
                payload["refused"], summary.key, payload["peer"], payload["window_seconds"], payload["reasons"],
            )  # fmt: skip
            try:
                self._store().append_event(summary.key, REFUSALS_EVENT, "agent", "mcp", payload)
            except Exception as exc:
                logger.warning("could not audit the refused MCP calls of %s: %s", summary.key, type(exc).__name__)
        if final:
            self.pacer.flush(FINAL_FLUSH_SECONDS)
        else:
            self.pacer.publish_due()

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.seconds)
            try:
                await anyio.to_thread.run_sync(self.tick)
            except Exception:
                logger.exception("MCP housekeeping failed; retrying at the next tick")

    async def finish(self) -> None:
        """The final tick, shielded from the cancellation that stops the server and bounded in time."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(FINAL_FLUSH_SECONDS + 1):
            try:
                await anyio.to_thread.run_sync(lambda: self.tick(final=True), abandon_on_cancel=True)
            except Exception:
                logger.exception("MCP housekeeping could not finish")

    def lifespan(self) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
        """The server's lifespan: housekeeping in the background while it serves, a final tick when it stops."""

        @asynccontextmanager
        async def lifespan(_server: Any) -> AsyncIterator[dict[str, Any]]:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self.run)
                    try:
                        yield {}
                    finally:
                        tg.cancel_scope.cancel()
            finally:
                await self.finish()

        return lifespan
