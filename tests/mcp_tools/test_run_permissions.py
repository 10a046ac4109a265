"""The server, not the agent's client, decides which tools a run may call (attack review 26a, findings 4 and 5): the
tools of the run's role as its token says (signed), and no write tool once the run has finished."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver.exceptions import ToolError

from codexk8s_pipelines.mcp.tokens import verify_token
from codexk8s_pipelines.mcp.tools import WRITE_TOOLS, PlatformTools

from .conftest import REPO, SECRET, Platform, data_of, text_of


def _refused_and_audited(platform: Platform, tool: str, arguments: dict[str, Any], *needles: str) -> None:
    result = platform.call(tool, {"token": platform.token, **arguments})
    message = text_of(result)
    assert result.is_error, message
    for needle in needles:
        assert needle in message, message
    called, failed = platform.events()[-2:]
    assert (called["event_type"], failed["event_type"]) == ("mcp.tool.called", "mcp.tool.failed")
    assert failed["payload"]["tool"] == tool and needles[0] in failed["payload"]["reason"]


# -- finding 4: the role's tools --------------------------------------------------------------------------------------
def test_the_token_carries_the_role_and_its_tools(platform: Platform, em_platform: Platform) -> None:
    dev = verify_token(platform.token, 1_900_000_000, secret=SECRET)
    assert dev.role == "dev" and dev.tools is not None and "github_labels_transition" not in dev.tools
    em = verify_token(em_platform.token, 1_900_000_000, secret=SECRET)
    assert em.role == "em" and em.tools is not None and "github_labels_transition" in em.tools


def test_a_dev_run_cannot_change_labels(platform: Platform) -> None:
    _refused_and_audited(
        platform, "github_labels_transition", {"add": ["state:blocked", "need:pm"]},
        "github_labels_transition is not one of the tools of this run's role (dev)",
    )  # fmt: skip
    _refused_and_audited(platform, "github_labels_list", {}, "not one of the tools of this run's role (dev)")
    assert platform.state.labels(REPO, platform.issue) == ["run:dev", "bug"]
    assert "run.labels.changed" not in platform.event_types()
    # Its own tools still work.
    data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "still fine"}))


def test_the_signed_tool_list_decides_not_the_runs_role(platform: Platform) -> None:
    """A token minted with fewer tools than its role has gets only those: the client's list, enforced."""
    platform.token = platform.token_for(tools=["runs_list"])
    data_of(platform.call("runs_list", {"token": platform.token}))
    _refused_and_audited(platform, "docs_search", {"query": "cart"}, "docs_search is not one of the tools")
    assert not platform.index.calls


def test_a_token_without_a_role_gets_its_runs_recorded_role(platform: Platform) -> None:
    platform.token = platform.token_for(role=None)  # minted before tokens carried a role
    assert verify_token(platform.token, 1_900_000_000, secret=SECRET).tools is None
    _refused_and_audited(platform, "github_labels_transition", {"add": ["need:qa"]}, "role (dev)")
    data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "dev may report"}))


def test_a_token_of_an_unknown_run_without_a_role_may_only_read(platform: Platform) -> None:
    platform.key = "acme/shop#1:run:dev:404"  # no run record
    platform.token = platform.token_for(role=None)
    data_of(platform.call("runs_list", {"token": platform.token}))
    _refused_and_audited(platform, "run_status_report", {"status_line": "hi"}, "run_status_report is refused", "read")
    _refused_and_audited(platform, "github_labels_transition", {"add": ["need:qa"]}, "is refused")
    assert "run.agent.status_reported" not in platform.event_types()


def test_the_write_tools_are_the_ones_not_annotated_read_only(platform: Platform) -> None:
    async def body(client: Client) -> Any:
        return await client.list_tools()

    listed = platform.run(body).tools
    assert {t.name for t in listed if t.annotations is None or not t.annotations.read_only_hint} == WRITE_TOOLS


# -- finding 5: nothing changes after the run -------------------------------------------------------------------------
@pytest.mark.parametrize("status", ["succeeded", "failed", "canceled"])
def test_a_finished_runs_token_can_read_but_not_write(em_platform: Platform, status: str) -> None:
    platform = em_platform
    platform.store.set_run_status(platform.key, status)
    _refused_and_audited(
        platform, "github_labels_transition", {"add": ["need:qa"]}, f"has finished ({status})", "can still read"
    )
    _refused_and_audited(platform, "run_status_report", {"status_line": "after the end"}, "has finished")
    assert platform.state.labels(REPO, platform.issue) == ["run:dev", "bug"]
    assert platform.state.comments(REPO, platform.issue) == []
    assert not {"run.labels.changed", "run.agent.status_reported"} & set(platform.event_types())
    data_of(platform.call("runs_list", {"token": platform.token}))
    data_of(platform.call("github_labels_list", {"token": platform.token}))


def test_a_running_run_may_still_write(em_platform: Platform) -> None:
    em_platform.store.set_run_status(em_platform.key, "running")
    data_of(em_platform.call("github_labels_transition", {"token": em_platform.token, "add": ["need:qa"]}))


def test_the_tools_refuse_without_the_guard_too(em_platform: Platform) -> None:
    em_platform.store.set_run_status(em_platform.key, "succeeded")
    tools = PlatformTools(em_platform.services)
    with pytest.raises(ToolError, match="has finished"):
        tools.run_status_report(em_platform.token, "direct")
    with pytest.raises(ToolError, match="has finished"):
        tools.github_labels_transition(em_platform.token, ["need:qa"], None, None)
    with pytest.raises(ToolError, match=r"role \(dev\)"):
        tools.github_labels_transition(em_platform.token_for(role="dev"), ["need:qa"], None, None)
