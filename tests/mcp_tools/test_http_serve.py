"""`codexk8s mcp serve --transport http` as a real process, called through the SDK's streamable-HTTP client."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.mcp.http import token_candidates
from codexk8s_pipelines.mcp.limits import MAX_BODY_BYTES
from codexk8s_pipelines.mcp.server import UNVERIFIED_KEY
from codexk8s_pipelines.mcp.tokens import issue_token
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from tests.helpers import free_port

from .conftest import SECRET, data_of

START_TIMEOUT = 60.0
SERVER_PIDS: dict[str, int] = {}  # the process of each running server, by its URL


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
        url = f"http://127.0.0.1:{port}/mcp"
        SERVER_PIDS[url] = proc.pid
        yield url
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


# -- what one peer without a token cannot make the server do (review 41) --------------------------------------------
MCP_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2025-06-18",
}
OTHER_PEER = "127.0.0.2"  # another address of the loopback: another agent, as the server sees it
# One peer's flood, in a process of its own (its threads must not slow the measuring one): `threads` connections, each
# POSTing the same body again and again until `seconds` have passed; prints how it was answered, by status.
FLOOD = """
import collections, http.client, json, sys, threading, time
port, threads, seconds, size = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
numbers = "[" + ",".join(["0"] * (size // 2)) + "]"  # the costliest JSON to parse per byte (review 41)
body = ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"runs_list",'
        '"arguments":{"token":"junk","x":%s}}}' % numbers).encode()
headers = json.loads(sys.argv[5])
answers = collections.Counter()
stop = time.monotonic() + seconds
def flood():
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while time.monotonic() < stop:
        try:
            connection.request("POST", "/mcp", body, headers)
            response = connection.getresponse()
            response.read()
            answers[str(response.status)] += 1
            if response.getheader("connection", "").lower() == "close":
                connection.close()
        except OSError as exc:  # a refused body is not read to its end: the connection may be reset under it
            answers[type(exc).__name__] += 1
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
workers = [threading.Thread(target=flood) for _ in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
print(json.dumps({"body": len(body), "answers": answers}))
"""


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


class Answer(NamedTuple):
    status: int
    text: str


def _post(url: str, body: bytes, source: str = OTHER_PEER) -> Answer:
    """One POST from `source` (raw HTTP, as any client could send it)."""
    connection = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=60, source_address=(source, 0))
    try:
        connection.request("POST", "/mcp", body, MCP_HEADERS)
        response = connection.getresponse()
        return Answer(response.status, response.read().decode())
    finally:
        connection.close()


def _tool_call(tool: str, arguments: dict[str, Any]) -> bytes:
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return json.dumps(request).encode()


def _tool_result(response: Answer) -> dict[str, Any]:
    """The JSON-RPC result of a tools/call answered over SSE (one `data:` line)."""
    assert response.status == 200, (response.status, response.text[:300])
    data = next(line[5:] for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip())
    return json.loads(data)["result"]


def _runs_list_seconds(url: str, token: str) -> float:
    started = time.perf_counter()
    result = _tool_result(_post(url, _tool_call("runs_list", {"token": token})))
    elapsed = time.perf_counter() - started
    assert not result.get("isError"), result
    return elapsed


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from Linux /proc")
def test_a_flood_of_large_bodies_without_a_token_leaves_another_agents_calls_fast(
    http_server: str, store: PlatformStore
) -> None:
    """60 connections of one peer, each sending 3.8 MB of numbers with a made-up token, made another agent's call wait
    35 s and grew the server past its 1 GiB limit (review 41). Now the peer's requests beyond its few slots wait
    unread, its large bodies are read one at a time and refused (403) without being parsed, and the other agent's
    calls take about as long as with no flood; measured against the same calls just before, on the same machine."""
    tokens = []
    for event in (906, 907):  # one run's calls before the flood, another's during it: 20 each, within their rate
        key = correlation_key("acme/shop", 12, "run:dev", event)
        store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
        tokens.append(issue_token(key, "acme/shop", issue_number=12, secret=SECRET))
    port, pid = _port(http_server), SERVER_PIDS[http_server]
    _runs_list_seconds(http_server, tokens[0])  # the first call pays for imports and connections
    quiet = sorted(_runs_list_seconds(http_server, tokens[0]) for _ in range(15))
    memory_before = _peak_rss_kb(pid)

    def flood(threads: int, size: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", FLOOD, str(port), str(threads), "8", str(size), json.dumps(MCP_HEADERS)],
            stdout=subprocess.PIPE,
            text=True,
        )

    large, too_large = flood(60, 3_800_000), flood(2, MAX_BODY_BYTES + 1)
    time.sleep(1.5)  # the flood under way
    loaded = []
    while large.poll() is None and len(loaded) < 20:
        loaded.append(_runs_list_seconds(http_server, tokens[1]))
        time.sleep(0.2)
    flooded = json.loads(large.communicate(timeout=60)[0])
    refused = json.loads(too_large.communicate(timeout=60)[0])

    loaded.sort()
    quiet_median, loaded_median = quiet[len(quiet) // 2], loaded[len(loaded) // 2]
    assert len(loaded) >= 10, loaded  # the old server answered one call in 20 s
    assert loaded_median <= 5 * quiet_median, (quiet_median, loaded)
    answers = flooded["answers"]
    assert answers.get("403", 0) > 0 and not answers.get("200"), answers  # refused unparsed, none reached the tools
    assert set(refused["answers"]) <= {"413", "ConnectionResetError", "BrokenPipeError"}, refused
    assert refused["answers"].get("413"), refused
    grown = _peak_rss_kb(pid) - memory_before
    assert grown < 300_000, f"the server grew by {grown} kB"  # 1.15 GB before, with no bound on bodies at once

    response = _post(http_server, _tool_call("runs_list", {"token": "junk", "x": "y" * 20_000}), source="127.0.0.1")
    assert response.status == 403 and "valid run token" in response.text, response.text
    # Audited as refused calls are: the first of the peer's minute whole, the others counted (in one row when the
    # minute is over), so the flood's thousands of refusals wrote one row.
    audit = [(e["event_type"], e["payload"]) for e in store.events(UNVERIFIED_KEY)]
    assert [t for t, _ in audit if t != "mcp.tool.refusals"] == ["mcp.tool.failed"], audit
    assert audit[0][1]["tool"] == "(not read)" and audit[0][1]["peer"] == "127.0.0.1", audit


def _until_closed(sock: socket.socket) -> bytes:
    """What the server sent until it closed the connection (or reset it, having left the request unread)."""
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65_536):
            data += chunk
    return data


def test_a_body_over_the_limit_is_refused_by_the_bytes_that_arrive(http_server: str) -> None:
    port = _port(http_server)
    # Declared too large: answered before the body is sent (the client waits for `100 Continue`).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json, text/event-stream\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        answer = _until_closed(sock).decode()
    assert answer.startswith("HTTP/1.1 413") and f"at most {MAX_BODY_BYTES}" in answer, answer
    # Chunked, no length said: counted as it streams in, refused once past the limit (and the rest left unread).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )

        def send_more_than_the_limit() -> None:
            chunk = b"1" * 65_536
            with contextlib.suppress(OSError):  # the server stops reading once it has answered
                for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

        sender = threading.Thread(target=send_more_than_the_limit)
        sender.start()
        refused = _until_closed(sock)
        sender.join(timeout=30)
    assert refused.startswith(b"HTTP/1.1 413") and b"has more than" in refused, refused[:500]


def test_a_large_request_with_the_runs_token_reaches_the_tools(http_server: str, store: PlatformStore) -> None:
    """A request over the size read unchecked (a diff, many paths) goes on when it carries the run's token, wherever
    the token is in it; a token quoted inside the text (a diff of a test) is not taken for the request's."""
    key = correlation_key("acme/shop", 12, "run:dev", 908)
    store.register_run(RunRecord(key, "acme/shop", role="dev", stage="dev", issue_number=12))
    token = issue_token(key, "acme/shop", issue_number=12, secret=SECRET)
    quoted = json.dumps({"token": token}) * 2  # text that mentions the token: inside a string, its quotes are escaped
    result = _tool_result(_post(http_server, _tool_call("runs_list", {"x": "y" * 40_000 + quoted, "token": token})))
    assert result["isError"] and "unknown argument 'x'" in result["content"][0]["text"]  # read, parsed, checked
    response = _post(http_server, _tool_call("runs_list", {"x": "y" * 40_000 + quoted, "token": "junk"}))
    assert response.status == 403, response.text


def test_token_candidates_are_the_members_of_the_json_not_text_inside_its_strings() -> None:
    body = json.dumps({"params": {"arguments": {"diff": 'a "token": "ck8s1.in.diff" \\', "token": "ck8s1.a.b"}}})
    assert list(token_candidates(body.encode())) == ["ck8s1.a.b"]
