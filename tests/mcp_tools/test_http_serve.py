"""`codexk8s mcp serve --transport http` as a real process, called through the SDK's streamable-HTTP client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.mcp.server import UNVERIFIED_KEY
from codexk8s_pipelines.mcp.tokens import issue_token
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from tests.helpers import free_port

from .conftest import SECRET, data_of

START_TIMEOUT = 60.0


def _command() -> list[str]:
    script = Path(sys.executable).with_name("codexk8s")
    if script.exists():
        return [str(script)]
    found = shutil.which("codexk8s")
    return [found] if found else [sys.executable, "-m", "codexk8s_pipelines.cli"]


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mcp serve exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"mcp serve did not listen on {port} within {START_TIMEOUT}s:\n{log.read_text(errors='replace')}")


@pytest.fixture
def http_server(store: PlatformStore, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CODEXK8S_GITHUB")  # GitHub is optional for the server; none here
    }
    config = tmp_path / "codexk8s.yaml"
    config.write_text("repositories:\n  - github: acme/shop\n")
    env.update({"CODEXK8S_DATABASE_URL": store.url, "CODEXK8S_MCP_SECRET": SECRET, "CODEXK8S_CONFIG": str(config)})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*_command(), "mcp", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        _wait_for_port(proc, port, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_runs_list_over_streamable_http(http_server: str, store: PlatformStore) -> None:
    key = correlation_key("acme/shop", 12, "run:dev", 901)
    store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
    token = issue_token(key, "acme/shop", issue_number=12, secret=SECRET)

    async def main() -> tuple[set[str], dict]:
        with anyio.fail_after(60):
            async with Client(http_server, read_timeout_seconds=20) as client:
                tools = {t.name for t in (await client.list_tools()).tools}
                result = await client.call_tool("runs_list", {"token": token})
                return tools, data_of(result)

    tools, data = anyio.run(main)
    assert {"runs_list", "run_status_report", "github_labels_transition"} <= tools
    assert [r["run"] for r in data["runs"]] == [key]
    assert [e["event_type"] for e in store.events(key)] == ["mcp.tool.called", "mcp.tool.succeeded"]


def test_github_labels_list_over_stdio(store: PlatformStore, tmp_path: Path) -> None:
    """`codexk8s mcp serve` (stdio, the default) started by the SDK's stdio client, as an agent CLI would."""
    from mcp import StdioServerParameters

    key = correlation_key("acme/shop", 12, "run:dev", 902)
    token = issue_token(key, "acme/shop", issue_number=12, secret=SECRET)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXK8S_GITHUB")}
    config = tmp_path / "codexk8s.yaml"
    config.write_text("repositories:\n  - github: acme/shop\n")
    env.update({"CODEXK8S_DATABASE_URL": store.url, "CODEXK8S_MCP_SECRET": SECRET, "CODEXK8S_CONFIG": str(config)})
    command = _command()
    params = StdioServerParameters(command=command[0], args=[*command[1:], "mcp", "serve"], env=env, cwd=str(tmp_path))

    async def main() -> str:
        with anyio.fail_after(60):
            async with Client(params, read_timeout_seconds=20) as client:
                result = await client.call_tool("github_labels_list", {"token": token})
                assert result.is_error
                return " ".join(c.text for c in result.content if isinstance(c, TextContent))

    assert "GitHub is not configured" in anyio.run(main)
    assert [e["event_type"] for e in store.events(key)] == ["mcp.tool.called", "mcp.tool.failed"]


# -- what one caller cannot exhaust (review 38, M2) -------------------------------------------------------------------
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "flood", "version": "1"}},
}
JSON_OR_STREAM = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def _http(url: str, method: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str]]:
    """One raw request, as a client that needs no SDK (and no token) could send it: its status and headers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=JSON_OR_STREAM, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}


def _runs_list(url: str, token: str, times: int = 1) -> list[CallToolResult]:
    async def main() -> list[CallToolResult]:
        with anyio.fail_after(60):
            async with Client(url, read_timeout_seconds=20) as client:
                return [await client.call_tool("runs_list", {"token": token}) for _ in range(times)]

    return anyio.run(main)


def test_initialize_opens_no_session_so_none_can_be_exhausted(http_server: str, store: PlatformStore) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: _http(http_server, "POST", INITIALIZE), range(300)))
    assert {status for status, _ in answers} == {200}
    assert not [h for _, h in answers if "mcp-session-id" in h]  # the SDK's default kept each for 30 idle minutes
    status, headers = _http(http_server, "GET")
    assert status == 405 and headers.get("allow") == "POST"  # no standing stream per caller either

    key = correlation_key("acme/shop", 12, "run:dev", 903)
    store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
    (result,) = _runs_list(http_server, issue_token(key, "acme/shop", issue_number=12, secret=SECRET))
    assert [r["run"] for r in data_of(result)["runs"]] == [key]  # an agent's client, after the flood


def test_calls_without_a_valid_token_are_limited_per_address(http_server: str, store: PlatformStore) -> None:
    texts = [
        " ".join(c.text for c in r.content if isinstance(c, TextContent)) for r in _runs_list(http_server, "junk", 12)
    ]
    assert all("token malformed" in t for t in texts[:5]), texts[:5]  # UNVERIFIED_BURST: told why
    assert all("rate limited" in t and "retry after" in t for t in texts[-5:]), texts[-5:]
    called, failed = store.events(UNVERIFIED_KEY)  # the first refusal whole; the rest are counted (refusals.py)
    assert called["event_type"] == "mcp.tool.called" and failed["payload"]["peer"] == "127.0.0.1"

    key = correlation_key("acme/shop", 12, "run:dev", 904)
    store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
    (result,) = _runs_list(http_server, issue_token(key, "acme/shop", issue_number=12, secret=SECRET))
    data_of(result)  # a valid token from the same address is not held by the others' refusals


def test_idle_connections_do_not_turn_other_agents_away(http_server: str, store: PlatformStore) -> None:
    """One sandboxed agent's egress relay lets it hold 256 connections: opened and never used, they filled a cap on
    open connections (uvicorn's `limit_concurrency`, which never closes a connection that sends no request) and
    every other agent's call got 503 (review 39)."""
    port = int(http_server.rsplit(":", 1)[1].split("/")[0])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
    try:
        time.sleep(1)
        key = correlation_key("acme/shop", 12, "run:dev", 905)
        store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
        (result,) = _runs_list(http_server, issue_token(key, "acme/shop", issue_number=12, secret=SECRET))
        assert [r["run"] for r in data_of(result)["runs"]] == [key]
    finally:
        for connection in idle:
            connection.close()
