"""`codexk8s mcp serve --transport http` as a real process, called through the SDK's streamable-HTTP client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from codexk8s_pipelines.domain.correlation import correlation_key
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
                return " ".join(c.text for c in result.content if hasattr(c, "text"))

    assert "GitHub is not configured" in anyio.run(main)
    assert [e["event_type"] for e in store.events(key)] == ["mcp.tool.called", "mcp.tool.failed"]
