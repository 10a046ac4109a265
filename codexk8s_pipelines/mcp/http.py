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
"""

from __future__ import annotations

import json
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

KEEP_ALIVE_SECONDS = 5
NO_STREAM_BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32000, "message": "Method Not Allowed: no SSE stream (stateless)"},
    }
).encode()


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
    """The ASGI app of `server` (an `MCPServer`) at `path`: stateless streamable HTTP; `host` keeps the SDK's DNS
    rebinding protection when it is a loopback address."""
    app = server.streamable_http_app(streamable_http_path=path, stateless_http=True, host=host)
    return NoStandaloneStream(app, path)


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
