"""Fixtures for the MCP tools: the embedded database, the fake GitHub, a run, its token, and an in-process
SDK client (`mcp.Client(server)`), so every test goes through the protocol as an agent would."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from codexk8s_pipelines.agents.catalog import load_catalog
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.knowledge.impact import ImpactHit
from codexk8s_pipelines.knowledge.search import SearchHit
from codexk8s_pipelines.mcp.limits import McpLimits
from codexk8s_pipelines.mcp.server import build_server
from codexk8s_pipelines.mcp.tokens import issue_token
from codexk8s_pipelines.mcp.tools import McpServices
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from tests.github_server import GitHubServer, GitHubState, github_server  # noqa: F401  (fixture)

REPO = "acme/shop"
SECRET = "mcp-test-secret-5f1c0b8e2d7a4c39"
# Looks like a real GitHub token, so the redaction patterns would catch it if it ever reached a payload.
GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2
NOW = 1_900_000_000.0
CONFIG = """
repositories:
  - github: acme/shop
"""
# The tool tests make many calls through one client faster than any agent could: the harness lifts the burst of calls
# a token may make; everything else is the server's default. The limits are tested with their own numbers
# (test_limits.py).
HARNESS_LIMITS = McpLimits(call_burst=1_000)


@dataclass
class FakeIndex:
    """Stands in for the knowledge index (no model, no corpus needed) and records how the tools called it; the
    hits are the knowledge core's own types."""

    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def search(self, conn_url: str, query: str, **kw: Any) -> list[SearchHit]:
        self.calls.append(("search", (conn_url, query), kw))
        return [
            SearchHit(kw["repository"], "docs/checkout.md", ("Checkout", "Empty cart"), 10, 24, 0.91, "An empty..."),
            SearchHit(kw["repository"], "README.md", ("Usage",), 1, 5, 0.42, "Run make run"),
        ][: kw["k"]]

    def change_impact(self, conn_url: str, repository: str, **kw: Any) -> list[ImpactHit]:
        self.calls.append(("change_impact", (conn_url, repository), kw))
        return [ImpactHit(repository, "docs/checkout.md", ("Checkout",), 10, 24, 0.8, ("mentions cart.py",))]


@dataclass
class Platform:
    """One test's world: the store, the fake GitHub, the run and its token, and the server under test. The token
    carries the run's role and that role's MCP tools, as the stage job mints it."""

    store: PlatformStore
    state: GitHubState
    issue: int
    key: str
    token: str
    index: FakeIndex
    services: McpServices
    results: list[CallToolResult] = field(default_factory=list)
    role: str = "dev"
    limits: McpLimits = HARNESS_LIMITS

    def with_run(self, trigger: str, role: str, stage: str, event: int) -> Platform:
        """The same world seen from another run of the same issue (registered with its role), with its own token."""
        key = correlation_key(REPO, self.issue, trigger, event)
        self.store.register_run(RunRecord(key, REPO, role=role, stage=stage, issue_number=self.issue))
        other = dataclasses.replace(self, key=key, role=role)
        other.token = other.token_for()
        return other

    def client(self) -> Client:
        return Client(build_server(self.services, limits=self.limits), read_timeout_seconds=30)

    def run(self, body: Callable[[Client], Awaitable[Any]]) -> Any:
        """Run `body` against a connected in-process client, bounded so a hang fails instead of blocking."""

        async def main() -> Any:
            with anyio.fail_after(60):
                async with self.client() as client:
                    return await body(client)

        return anyio.run(main)

    def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        """One tools/call through the SDK client; every result is kept for the no-secrets checks."""

        async def body(client: Client) -> CallToolResult:
            return await client.call_tool(tool, arguments)

        result = self.run(body)
        self.results.append(result)
        return result

    def token_for(self, **kw: Any) -> str:
        """A token of this run (or of what `kw` says); `role=None` mints one without role and tools (an old one)."""
        args: dict[str, Any] = {"issue_number": self.issue, "expires_at": int(NOW) + 3600, "secret": SECRET}
        args.update(kw)
        role = args.setdefault("role", self.role)
        if role is not None and "tools" not in args:
            args["tools"] = load_catalog().for_role(role).mcp_tools
        return issue_token(args.pop("run_key", self.key), args.pop("repository", REPO), **args)

    def events(self, key: str | None = None) -> list[dict[str, Any]]:
        return self.store.events(key or self.key)

    def event_types(self, key: str | None = None) -> list[str]:
        return [e["event_type"] for e in self.events(key)]


def text_of(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def data_of(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    json.dumps(result.structured_content)  # JSON-serialisable, as the brief of every tool says
    return result.structured_content


@pytest.fixture
def platform(
    github_server: GitHubServer,  # noqa: F811
    store: PlatformStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Platform]:
    config = tmp_path / "codexk8s.yaml"
    config.write_text(CONFIG)
    state = github_server.state
    state.add_token(GITHUB_TOKEN, "codexk8s[bot]", type="Bot")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    monkeypatch.setenv("CODEXK8S_MCP_SECRET", SECRET)
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    monkeypatch.delenv("CODEXK8S_GITHUB_APP_ID", raising=False)
    monkeypatch.delenv("CODEXK8S_GITHUB_APP_PRIVATE_KEY", raising=False)
    state.add_repo(REPO, collaborators={"alice": "write"})
    state.add_repo("acme/other")
    issue = state.add_issue(REPO, "Checkout fails on empty cart", labels=["run:dev", "bug"])
    key = correlation_key(REPO, issue, "run:dev", 901)
    store.register_run(RunRecord(key, REPO, role="dev", stage="dev", issue_number=issue))

    index = FakeIndex()
    services = McpServices.from_environment()
    services.clock = lambda: NOW
    services.search = index.search
    services.change_impact = index.change_impact
    world = Platform(store, state, issue, key, "", index, services)
    world.token = world.token_for()
    yield world


@pytest.fixture
def em_platform(platform: Platform) -> Platform:
    """The world of an em (plan) run of the same issue: the only role whose tools include the label tools."""
    return platform.with_run("run:plan", "em", "plan", 902)
