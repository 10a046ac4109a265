"""The real Codex CLI, Claude Code and OpenCode reach the platform's MCP server (a real `codexk8s mcp serve
--transport http`, stateless) through the configuration the platform writes for them: the model asks for
`run_status_report` with the run token the agent read from its environment, and the status lands in the audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.mcp.tokens import issue_token
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord
from tests.mcp_tools.conftest import SECRET
from tests.mcp_tools.test_http_serve import http_server  # noqa: F401 - the fixture
from tests.model_server import LAST_OUTPUT, CallTool, ModelServer, Say, Shell

from .conftest import MODEL_KEY, run_direct


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["codex", "claude-code", "opencode"])
def test_the_agent_calls_the_platforms_mcp_tool_with_its_run_token(
    kind: str,
    model: ModelServer,
    checkout: Path,
    tmp_path: Path,
    store: PlatformStore,
    http_server: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEXK8S_MCP_SECRET", SECRET)
    key = correlation_key("acme/shop", 12, "run:dev", "901")
    store.register_run(RunRecord(correlation_key=key, repository="acme/shop", role="dev", stage="dev", issue_number=12))
    token = issue_token(key, "acme/shop", issue_number=12, ttl_seconds=600)
    model.script(
        Shell("printenv CODEXK8S_MCP_TOKEN"),
        CallTool("run_status_report", {"token": LAST_OUTPUT, "status_line": "Reading the cart code via MCP"}),
        Say("Reported my status."),
        workdir=checkout,
    )
    run = run_direct(
        kind, checkout, tmp_path / "home", "Report your status.", base_url=model.v1, mcp_url=http_server,
        extra_env={"CODEXK8S_MCP_TOKEN": token},
    )  # fmt: skip
    assert run.exit_code == 0, run.lines[-15:]
    offered = model.turns()[-1].tool_names()  # Codex defers MCP tools: found through its tool search
    mcp_tools = [name for name in offered if "run_status_report" in name]
    assert mcp_tools, offered  # the role's MCP tools reach the model ...
    if kind == "codex":  # ... and only those (Claude lists them all and refuses the ones not allowed)
        assert not [name for name in offered if "github_labels_transition" in name]
    statuses = [e for e in store.events(key) if e["event_type"] == "run.agent.status_reported"]
    assert [e["payload"]["status"] for e in statuses] == ["Reading the cart code via MCP"]
    assert run.transcript.tools and all(t.ok for t in run.transcript.tools)
    assert MODEL_KEY not in model.turns()[1].text  # the model key stays hidden from the agent's commands
