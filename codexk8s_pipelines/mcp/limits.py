"""How much of the platform one caller of the MCP server may use: the numbers, and why they are these.

The server is shared by every run's agent, and an agent is untrusted. Without bounds one of them (or anyone who
reaches the port, before any token is checked) could spend the platform's GitHub rate limit through
`run_status_report`, hold the platform database's connections, or grow the append-only audit without end
(review 38, M1). Each bound below is sized from what a real agent does — it calls a tool once per model turn,
which takes seconds, and now and then a few in parallel — with room to spare, so a working agent never meets
one and a scripted flood meets all of them.

All of them are per server process: with `mcp.replicaCount` > 1 (helm) a caller may get up to that many times
as much, spread over the replicas.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..store import PlatformStore

# -- calls of one token (of one run) -------------------------------------------------------------------------------
CALLS_PER_MINUTE = 60.0
"""Sustained calls a token may make: one a second. A model-driven agent makes one call per turn (seconds each);
a flood is held to two audit rows and one tool's work a second."""
CALL_BURST = 20
"""Calls a token may make at once before the rate applies: a turn's parallel batch of tool calls, several times over."""
IN_FLIGHT_PER_TOKEN = 4
"""Calls of one token that run at once; more wait for a slot. Each running call holds at most one platform-database
connection at a time, so one agent never holds more than four."""
IN_FLIGHT_WAIT_SECONDS = 10.0
"""How long a call waits for a slot (its token's, then the server's) before it is refused as busy."""
SERVER_IN_FLIGHT = 16
"""Calls that run at once on the whole server, whatever their tokens. Each holds one connection at a time; with the
docs search's pool of at most four idle ones, the housekeeping's and a refused call's audit, the server holds about
20 of PostgreSQL's default `max_connections` (100), which the Dagster webserver, daemon, run pods and sensors share."""

# -- calls whose token does not verify, per peer address -----------------------------------------------------------
UNVERIFIED_PER_MINUTE = 10.0
"""Refusals with the token's reason a peer gets a minute; beyond that it is only told it is rate limited. An agent with
a wrong token learns why at once; it needs no more than a few tries to stop."""
UNVERIFIED_BURST = 5

# -- HTTP requests, before the SDK reads them (`http.py`) ------------------------------------------------------------
IN_FLIGHT_PER_PEER = 8
"""HTTP requests of one peer address the server takes at once, counted before a byte of their body is read; more wait
for a slot (WAITING_PER_PEER), then are answered 429. One agent runs at most IN_FLIGHT_PER_TOKEN calls and has a few
more waiting for a slot; a peer is one agent pod in Kubernetes, one run's relay locally (`http.py`), and twice
that leaves room for a machine where every local run is one peer (127.0.0.1 alone, macOS). 60 connections of one
peer sending 3.8 MB bodies made another agent's call wait 35 s and the server grow past its 1 GiB limit (review
41)."""
WAITING_PER_PEER = 64
"""Requests of one peer that wait (IN_FLIGHT_WAIT_SECONDS at most, their body unread) for one of its slots; more are
answered 429 at once. A waiting request costs a parked task and the little its connection buffered (uvicorn stops
reading it); refused at once, a flood would only send the next one, and the server would read and refuse it again."""
WAITING_AT_ONCE = 512
"""Requests waiting for a slot on the whole server (of any peers): beyond, they are answered 429 at once."""
MAX_DIFF_CHARS = 2_000_000
"""The longest `diff` docs_change_impact takes, the largest argument of any tool (a longer one: pass `files`)."""
MAX_BODY_BYTES = 2 * MAX_DIFF_CHARS + 65_536
"""The largest HTTP request body, counted as it streams in (not only by its Content-Length); a larger one is answered
413. Room for the longest diff at two bytes a character (Cyrillic in UTF-8, or code with JSON's escapes) and 64 KiB
for the rest of the call; about the MCP SDK's own default (4 MiB), which applied before."""
LARGE_BODY_BYTES = 16_384
"""A body larger than this is read only as its peer's one large body at a time and on one of LARGE_BODIES_AT_ONCE
slots of the server, and passed on only when it carries a token this platform signed. Every call but
docs_change_impact's `diff` or `files` fits in it (the longest query or status line is 2,000 characters), and parsing
JSON holds the server's one event loop (0.2 s for 3.8 MB of numbers), which a caller without a token must not make it
do again and again: a flood of 60 KB bodies still made another agent's call 12 times slower."""
LARGE_BODIES_AT_ONCE = 4
"""Large bodies being read and parsed at once on the whole server (of different peers); more wait
(IN_FLIGHT_WAIT_SECONDS) for a slot, then get 503. Their memory, raw and parsed, stays well under the server's limit."""
BODY_READ_SECONDS = 30.0
"""How long a body may take to arrive once its headers have: a diff on the cluster network takes milliseconds; one
sent a byte at a time would hold its peer's slots, and a large-body slot, for as long as it likes (408)."""

# -- the audit of refused calls ------------------------------------------------------------------------------------
REFUSAL_WINDOW_SECONDS = 60.0
"""A refusal that opens a window is audited whole (`mcp.tool.called` and `mcp.tool.failed`, as any call); the ones
after it in the window are counted, and written as one `mcp.tool.refusals` row when the window closes. A flood from
one peer writes at most three rows a minute instead of two a call."""

# -- the service comment -------------------------------------------------------------------------------------------
STATUS_EDIT_INTERVAL_SECONDS = 60.0
"""At most one edit of a run's service comment by `run_status_report` a minute. GitHub allows a credential about 500
content-creating requests an hour (its secondary limit), shared by every repository and run; a comment edit is one,
plus the read that finds the comment. A human reading the PR sees the agent's status at most a minute late (with the
time it was reported); the audit, `run_lookup` and `issue_trace` have every status at once."""

# -- the platform database -----------------------------------------------------------------------------------------
STATEMENT_TIMEOUT_MS = 10_000
"""The longest one statement of the MCP server may run. The tools' statements take milliseconds (a docs search about
50 ms on 100,000 chunks); ten seconds only ends one that is stuck (on a lock, a pathological plan), so no call holds a
connection that long for one statement."""

HOUSEKEEPING_SECONDS = 1.0
"""How often the server writes closed refusal windows and makes the status edits that were held back."""


@dataclass(frozen=True)
class McpLimits:
    """The bounds one server applies (defaults: the constants above, see each for why); tests inject small ones."""

    calls_per_minute: float = CALLS_PER_MINUTE
    call_burst: int = CALL_BURST
    in_flight_per_token: int = IN_FLIGHT_PER_TOKEN
    in_flight_wait_seconds: float = IN_FLIGHT_WAIT_SECONDS
    server_in_flight: int = SERVER_IN_FLIGHT
    unverified_per_minute: float = UNVERIFIED_PER_MINUTE
    unverified_burst: int = UNVERIFIED_BURST
    refusal_window_seconds: float = REFUSAL_WINDOW_SECONDS
    status_edit_interval_seconds: float = STATUS_EDIT_INTERVAL_SECONDS
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS
    housekeeping_seconds: float = HOUSEKEEPING_SECONDS
    in_flight_per_peer: int = IN_FLIGHT_PER_PEER
    waiting_per_peer: int = WAITING_PER_PEER
    waiting_at_once: int = WAITING_AT_ONCE
    max_body_bytes: int = MAX_BODY_BYTES
    large_body_bytes: int = LARGE_BODY_BYTES
    large_bodies_at_once: int = LARGE_BODIES_AT_ONCE
    body_read_seconds: float = BODY_READ_SECONDS
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        for name in ("calls_per_minute", "call_burst", "in_flight_per_token", "in_flight_wait_seconds",
                     "server_in_flight", "unverified_per_minute", "unverified_burst", "refusal_window_seconds",
                     "housekeeping_seconds", "statement_timeout_ms", "in_flight_per_peer", "waiting_per_peer",
                     "waiting_at_once", "max_body_bytes",
                     "large_body_bytes", "large_bodies_at_once", "body_read_seconds"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"McpLimits.{name} must be positive, not {getattr(self, name)!r}")
        if self.status_edit_interval_seconds < 0:
            raise ValueError("McpLimits.status_edit_interval_seconds must not be negative")


def with_statement_timeout(database_url: str, timeout_ms: int) -> str:
    """The database URL whose every connection ends a statement after `timeout_ms` (libpq `options`, kept with any
    the URL already has), so the store, the docs search and the audit of this server all get it."""
    url = PlatformStore(database_url).url  # without a SQLAlchemy driver suffix, which libpq cannot parse
    options = conninfo_to_dict(url).get("options") or ""
    return make_conninfo(url, options=f"{options} -c statement_timeout={int(timeout_ms)}".strip())
