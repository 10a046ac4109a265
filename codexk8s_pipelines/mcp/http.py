"""The MCP server over streamable HTTP, stateless: no session is ever opened, so none can be exhausted.

With the SDK's default (stateful) transport, `initialize` needed no token and opened a session that lived 30 idle
minutes, up to 10,000 of them: one caller opened all 10,000 in about 100 s, after which every other agent's
`initialize` was refused (503) and the server's memory had grown by 400 MB (review 38, M2). Nothing here needs a
session: every tool call carries its own token and is answered on its own request, and the server never calls the
client back. So each POST is served by a transport of its own that ends with the request, and GET (the optional
stream for server-initiated messages, which stateless mode would keep open per request with nothing ever to send)
is answered 405, as the protocol allows a server that offers no such stream; the agents' clients (Codex, Claude
Code, OpenCode) then simply do without it. DELETE has no session to end (405 from the SDK).

Uvicorn closes idle keep-alive connections after a few seconds and takes the peer address from the connection,
never from a forwarded header. It caps no connections: its cap (`limit_concurrency`) counts open connections, and one
that never sends a request is never closed, so 256 idle sockets, which one sandboxed agent's egress relay allows,
turned every other agent away with 503 (review 39). What a call may use is bounded per token and per peer instead
(`throttle.py`).

Those bounds act on a call the SDK has read and parsed, and reading and parsing are the costly part of a large
request: 60 connections of one peer, each sending 3.8 MB with a made-up token, made another agent's call wait 35 s
and grew the server past its 1 GiB memory limit (review 41). So `RequestGate` stands in front of the SDK and bounds
what a request costs before its token is read (the numbers: `limits.py`):
- at most `in_flight_per_peer` requests of one peer at once, counted before a byte of the body is read (429);
- no body over `max_body_bytes`, by its Content-Length and by the bytes that actually arrive (413);
- a body over `large_body_bytes` is read only as its peer's one large body at a time and as one of the server's
  `large_bodies_at_once` (waiting `in_flight_wait_seconds` for both, else 429 or 503), and handed to the SDK only when
  it carries a token this platform signed (403): the token is found in the raw JSON, without parsing it. A small body
  is cheap to parse, and the guard checks its token;
- every body arrives within `body_read_seconds` (408).
A refusal is answered at once, with a JSON-RPC-shaped error saying why (and Retry-After when waiting helps), and
audited the way refused calls are (`refusals.py`: the first of a window per peer whole, the rest counted).

A peer is the client address of the TCP connection. In Kubernetes each agent pod has its own address, so a peer is
one agent. Locally an agent reaches the server through its run's egress relay (`agents/egress.py`), a thread of the
runner that connects from a loopback address of the run's own (`egress.LOOPBACK_SOURCES`), so a peer is one run
there too: from 127.0.0.1 alike, eight header-only connections of one run made every other local run's agent wait
10 s and get 429. A system with 127.0.0.1 alone (macOS) has every local run as that one peer.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol, runtime_checkable

import anyio
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .limits import MAX_DIFF_CHARS, McpLimits
from .throttle import retry_after

logger = logging.getLogger(__name__)

KEEP_ALIVE_SECONDS = 5
NO_STREAM_BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32000, "message": "Method Not Allowed: no SSE stream (stateless)"},
    }
).encode()
LOCAL_PEER = "local"  # a connection with no address (a Unix socket)
# A `"token": "<value>"` member in raw JSON. The value is what a token can be (base64url parts and dots); one written
# with JSON escapes is not recognised, which no client does to these characters.
_TOKEN_MEMBER = re.compile(rb'"token"[ \t\r\n]*:[ \t\r\n]*"[ \t]*([A-Za-z0-9._-]{1,4096})[ \t]*"')
MAX_TOKEN_CANDIDATES = 16


@runtime_checkable
class Gatekeeper(Protocol):
    """What the gate asks of the server behind it (`server.RunScopeGuard`)."""

    @property
    def limits(self) -> McpLimits: ...

    def token_signed(self, token: str) -> bool:
        """Whether `token` carries this platform's signature (an expired one does: the guard says it expired)."""
        ...

    def request_refused(self, peer: str, kind: str, reason: str) -> Awaitable[None]:
        """Audit one request the gate refused; `kind` is its category, `reason` what the caller was told."""
        ...


class OpenGatekeeper:
    """The keeper of a server without a guard (the SDK's own): the limits only; a large body is passed on unchecked."""

    def __init__(self, limits: McpLimits | None = None) -> None:
        self._limits = limits or McpLimits()

    @property
    def limits(self) -> McpLimits:
        return self._limits

    def token_signed(self, token: str) -> bool:
        return True

    async def request_refused(self, peer: str, kind: str, reason: str) -> None:
        logger.warning("MCP request from %s refused: %s", peer, reason)


def token_candidates(body: bytes) -> Iterator[str]:
    """The values of the `"token"` members of a JSON body, read from its text without parsing it (at most
    MAX_TOKEN_CANDIDATES). A `"token"` whose opening quote is escaped is text inside a string, such as a diff that
    mentions one, not a member: a quote inside a JSON string always follows an odd number of backslashes."""
    found = 0
    for match in _TOKEN_MEMBER.finditer(body):
        start = slashes = match.start()
        while slashes > 0 and body[slashes - 1] == 0x5C:
            slashes -= 1
        if (start - slashes) % 2:
            continue
        yield match.group(1).decode("ascii")
        found += 1
        if found >= MAX_TOKEN_CANDIDATES:
            return


class Refused(Exception):
    """A request the gate answers itself: its status, what the caller reads, the audit's category; `close` when the
    rest of the body is left unread, so the connection cannot carry another request."""

    def __init__(
        self, status: int, kind: str, message: str, retry_after: int | None = None, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.retry_after, self.close = retry_after, close

    def messages(self) -> list[Message]:
        """The response, JSON-RPC-shaped like the SDK's own errors."""
        body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": self.message}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        if self.close:
            headers.append((b"connection", b"close"))
        return [
            {"type": "http.response.start", "status": self.status, "headers": headers},
            {"type": "http.response.body", "body": body},
        ]


class _Slots:
    """The large-body slots one request holds (its peer's, then the server's): taken while its body is read, given
    back once the SDK has parsed it."""

    def __init__(self) -> None:
        self.held: list[anyio.Semaphore] = []

    def release(self) -> None:
        while self.held:
            self.held.pop().release()


class _Peer:
    """One peer's requests: the slots of those in flight, how many wait for one (unread), and the one large body it
    may have read at a time."""

    def __init__(self, in_flight: int) -> None:
        self.slots = anyio.Semaphore(in_flight)
        self.users = 0  # in flight or waiting
        self.waiting = 0
        self.large = anyio.Semaphore(1)


class RequestGate:
    """The bounds of a request before the SDK reads it (module docstring)."""

    def __init__(self, app: ASGIApp, keeper: Gatekeeper) -> None:
        self.app = app
        self.keeper = keeper
        self.limits = keeper.limits
        self._peers: dict[str, _Peer] = {}  # touched only on the event loop, between awaits: no lock
        self._large: anyio.Semaphore | None = None
        self._waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = str(client[0]) if client else LOCAL_PEER
        limits = self.limits
        state = self._peers.get(peer)
        if state is None:
            state = self._peers[peer] = _Peer(limits.in_flight_per_peer)
        full = state.slots.value == 0
        if full and (state.waiting >= limits.waiting_per_peer or self._waiting >= limits.waiting_at_once):
            await self._refuse(peer, send, self._busy(scope, f"and {state.waiting} more wait"))
            return
        state.users += 1
        try:
            # A request beyond the peer's slots waits for one, its body unread: it costs a parked task and what the
            # connection already buffered. Answered at once instead, a flood made new requests as fast as the
            # server could refuse them (reading past 60 connections' 3.8 MB bodies, another agent's call took 12 s).
            state.waiting += full
            self._waiting += full
            try:
                with anyio.move_on_after(limits.in_flight_wait_seconds) as waited:
                    await state.slots.acquire()  # a cancelled acquire holds nothing
            finally:
                state.waiting -= full
                self._waiting -= full
            if waited.cancelled_caught:
                wait = f"none was answered within {limits.in_flight_wait_seconds:g} s"
                await self._refuse(peer, send, self._busy(scope, wait))
                return
            try:
                await self._serve(peer, state, scope, receive, send)
            finally:
                state.slots.release()
        finally:
            state.users -= 1
            if not state.users:
                del self._peers[peer]

    def _busy(self, scope: Scope, why: str) -> Refused:
        """429 for a request beyond its peer's slots, before its body is read. The connection is kept when the body
        is small (read past), closed when it is large (not read: reading past the 3.8 MB bodies of a flood, again and
        again, was what kept the server from anything else)."""
        limits = self.limits
        declared = _content_length(scope)
        wait = retry_after(limits.in_flight_wait_seconds)
        return Refused(
            429,
            "too many requests at once",
            f"Too Many Requests: {limits.in_flight_per_peer} requests from this address are in flight, {why};"
            f" retry after {wait} s",
            retry_after=wait,
            close=scope["method"] == "POST" and (declared is None or declared > limits.large_body_bytes),
        )

    async def _serve(self, peer: str, state: _Peer, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.limits
        slots = _Slots()
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limits.max_body_bytes:
                raise self._too_large(declared)
            if scope["method"] != "POST":  # no body to read (GET is answered 405, DELETE by the SDK)
                await self.app(scope, receive, send)
                return
            try:
                with anyio.fail_after(limits.body_read_seconds):
                    body = await self._read(receive, declared, state, slots)
            except TimeoutError:
                raise Refused(
                    408,
                    "request too slow",
                    f"Request Timeout: the body did not arrive within {limits.body_read_seconds:g} s",
                    close=True,
                ) from None
            if body is None:  # the client went away
                return
            if len(body) > limits.large_body_bytes and not any(
                self.keeper.token_signed(t) for t in token_candidates(body)
            ):
                raise Refused(
                    403,
                    "token missing (large request)",
                    f"Forbidden: a request over {limits.large_body_bytes} bytes is only read with a valid run token"
                    " in its arguments (`token`, the one the platform gave this agent); this one has none",
                )
            await self.app(scope, _replay(body, receive, slots), _releasing(send, slots))
        except Refused as refused:
            slots.release()
            await self._refuse(peer, send, refused)
        finally:
            slots.release()

    async def _read(self, receive: Receive, declared: int | None, state: _Peer, slots: _Slots) -> bytes | None:
        """The whole body, or None when the client went away; a large one only on the large-body slots."""
        limits = self.limits
        chunks: list[bytes] = []
        size = 0
        if declared is not None and declared > limits.large_body_bytes:
            await self._take_slots(state, slots)  # before a byte of it is read
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise self._too_large(size, counted=True)
            chunks.append(chunk)
            if size > limits.large_body_bytes and not slots.held:
                await self._take_slots(state, slots)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _take_slots(self, state: _Peer, slots: _Slots) -> None:
        """Its peer's one large-body slot, then one of the server's, waiting for both at most
        `in_flight_wait_seconds`: one peer reads one large body at a time, the server a few."""
        limits = self.limits
        if self._large is None:
            self._large = anyio.Semaphore(limits.large_bodies_at_once)
        wait = retry_after(limits.in_flight_wait_seconds)
        deadline = anyio.current_time() + limits.in_flight_wait_seconds
        for semaphore, refused in (
            (
                state.large,
                Refused(
                    429,
                    "too many large requests at once",
                    f"Too Many Requests: a request over {limits.large_body_bytes} bytes from this address is being"
                    f" read, and this one waited {wait} s for it; retry after {wait} s",
                    retry_after=wait,
                    close=True,
                ),
            ),
            (
                self._large,
                Refused(
                    503,
                    "server busy (large requests)",
                    f"Service Unavailable: {limits.large_bodies_at_once} requests over {limits.large_body_bytes} bytes"
                    f" are being read; retry after {wait} s",
                    retry_after=wait,
                    close=True,
                ),
            ),
        ):
            with anyio.move_on_at(deadline) as waited:
                await semaphore.acquire()  # a cancelled acquire holds nothing
            if waited.cancelled_caught:
                raise refused
            slots.held.append(semaphore)

    def _too_large(self, size: int, counted: bool = False) -> Refused:
        limits = self.limits
        return Refused(
            413,
            "request too large",
            f"Payload Too Large: the body has {'more than ' if counted else ''}{size} bytes; this server reads at most"
            f" {limits.max_body_bytes} (room for docs_change_impact's longest diff, {MAX_DIFF_CHARS} characters;"
            " pass 'files' instead of a longer one)",
            close=True,  # the rest of the body is not read
        )

    async def _refuse(self, peer: str, send: Send, refused: Refused) -> None:
        try:
            await self.keeper.request_refused(peer, refused.kind, refused.message)
        except Exception as exc:  # the answer matters more than its audit
            logger.warning("could not audit a refused MCP request: %s", type(exc).__name__)
        for message in refused.messages():
            await send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive, slots: _Slots) -> Receive:
    """The body read, as the SDK asks for it; after it, the connection's own messages (its disconnect). The SDK has
    parsed the body when it asks again, or when it starts to answer (`_releasing`): the slots are free then."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        slots.release()
        return await receive()

    return replay


def _releasing(send: Send, slots: _Slots) -> Send:
    async def sending(message: Message) -> None:
        slots.release()
        await send(message)

    return sending


class NoStandaloneStream:
    """Answers GET on the MCP path with 405: a stateless server has no stream of its own to offer."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app = app
        self.path = path.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].rstrip("/") == self.path:
            body = NO_STREAM_BODY
            headers = [
                (b"content-type", b"application/json"),
                (b"allow", b"POST"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def http_app(server: Any, path: str, host: str) -> ASGIApp:
    """The ASGI app of `server` (an `MCPServer`) at `path`: stateless streamable HTTP behind the request gate (with
    the server's guard as its keeper when it has one, `server.PlatformServer`); `host` keeps the SDK's DNS
    rebinding protection when it is a loopback address."""
    keeper = getattr(server, "gatekeeper", None)
    if not isinstance(keeper, Gatekeeper):
        keeper = OpenGatekeeper()
    app = server.streamable_http_app(
        streamable_http_path=path,
        stateless_http=True,
        host=host,
        max_request_body_size=keeper.limits.max_body_bytes,
    )
    return RequestGate(NoStandaloneStream(app, path), keeper)


def serve_http(server: Any, host: str, port: int, path: str, log_level: str = "info") -> None:
    """Serve until stopped (SIGTERM/SIGINT: uvicorn finishes the requests in flight, then the server's lifespan
    writes what it still holds)."""
    config = uvicorn.Config(
        http_app(server, path, host),
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        # Agents connect directly (a ClusterIP Service, or loopback locally): an X-Forwarded-For header is the
        # caller's own text, and believing it would give each made-up address its own limits (throttle.py).
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
