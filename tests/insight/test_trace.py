"""`codexk8s trace owner/repo#N` and the MCP tool `issue_trace`: an issue with an expired approval, a cancelled run,
a revise loop and a merge, told step by step in the order it happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from codexk8s_pipelines.cli import main
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.issue_trace import render_history_markdown
from codexk8s_pipelines.domain.spend import Cost, CostSource, TokenCounts
from codexk8s_pipelines.insight.trace import issue_trace
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.usage import UsageRecord, record_usage
from tests.github_server import github_server  # noqa: F401  (fixture)
from tests.mcp_tools.conftest import Platform, data_of, platform  # noqa: F401  (fixture)

REPO = "acme/shop"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def write_story(store: PlatformStore, issue: int, pr: int = 77) -> list[str]:
    """The story, written through the store's API with known times; returns the texts `trace` must show, in order."""

    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    def ev(key: str, event_type: str, minutes: float, actor: str = "dagster", actor_type: str = "system", **payload):
        store.append_event(key, event_type, actor_type, actor, payload, at=at(minutes))

    dev = {"kind": "run", "stage": "dev", "revise": False, "add_labels": []}
    plan = correlation_key(REPO, issue, "run:plan", 1)
    ev(plan, "run.requested", 0, "alice", "human", **{**dev, "stage": "plan"})
    ev(plan, "run.started", 1, dagster_run_id="aaaa1111-plan")
    ev(plan, "service_comment.upserted", 1, comment_id=5, phase="started")
    ev(plan, "run.agent.finished", 20, status="succeeded", reason="done", duration_seconds=1140.0,
       usage={"cost_usd": 0.5})  # fmt: skip
    ev(plan, "run.succeeded", 21, pr=None)
    refused = correlation_key(REPO, issue, "run:dev", 2)
    ev(refused, "trigger.ignored", 30, "eve", "human", kind="ignored", reason="actor_not_permitted",
       message="eve has read permission", add_labels=[])  # fmt: skip
    expired = correlation_key(REPO, issue, "run:dev", 3)
    ev(expired, "approval.requested", 40, "alice", "human", **{**dev, "kind": "approval_required"})
    ev(expired, "approval.expired", 40 + 24 * 60, "github-sensor")
    granted = correlation_key(REPO, issue, "run:dev", 4)
    ev(granted, "approval.requested", 1500, "alice", "human", **{**dev, "kind": "approval_required"})
    ev(granted, "approval.approved", 1530, "mallory", "human")
    ev(granted, "run.requested", 1530, "mallory", "human", **dev)
    ev(granted, "approval.applied", 1530, "github-sensor")
    ev(granted, "run.started", 1532, dagster_run_id="bbbb2222-cancel")
    ev(granted, "run.canceled", 1540, message="the run was cancelled in Dagster")
    again = correlation_key(REPO, issue, "run:dev", 5)
    ev(again, "run.requested", 1600, "alice", "human", **dev)
    ev(again, "run.started", 1601, dagster_run_id="cccc3333-dev")
    ev(again, "run.agent.status_reported", 1610, "mcp", "agent", status="writing tests", via="mcp")
    ev(again, "run.pr.created", 1650, number=pr, url=f"https://github.test/{REPO}/pull/{pr}")
    ev(again, "run.succeeded", 1651, pr=f"https://github.test/{REPO}/pull/{pr}")
    revise = correlation_key(REPO, pr, "run:dev:revise", "review-9")
    ev(revise, "run.requested", 1700, "bob", "human", **{**dev, "revise": True})
    ev(revise, "run.started", 1702, dagster_run_id="dddd4444-revise")
    ev(revise, "run.failed", 1710, reason="agent_timeout", message="the agent ran over 600s")
    revise2 = correlation_key(REPO, pr, "run:dev:revise", "review-10")
    ev(revise2, "run.requested", 1720, "bob", "human", **{**dev, "revise": True})
    ev(revise2, "run.started", 1721, dagster_run_id="eeee5555-revise")
    ev(revise2, "run.pr.updated", 1740, number=pr, url=f"https://github.test/{REPO}/pull/{pr}")
    ev(revise2, "run.succeeded", 1741)
    ev(correlation_key(REPO, issue, "pr:merged", pr), "pr.merged", 1800, "bob", "human", number=pr, merged_by="bob")
    # Another issue's story must not leak in.
    ev(correlation_key(REPO, issue * 10 + 1, "run:dev", 6), "run.requested", 5, "zed", "human", **dev)
    return [
        "`run:plan`: run requested → plan",
        "run started: http://127.0.0.1:3000/runs/aaaa1111-plan",
        "agent succeeded (done) in 19m 00s",
        "run succeeded after 20m 00s",
        "`run:dev`: refused (actor_not_permitted) eve has read permission",
        "`run:dev`: approval requested for dev",
        "approval expired",
        "`run:dev`: approval requested for dev",
        "approval granted",
        "`run:dev`: run requested → dev",
        "approved run released",
        "run started: http://127.0.0.1:3000/runs/bbbb2222-cancel",
        "run cancelled after 8m 00s: the run was cancelled in Dagster",
        "`run:dev`: run requested → dev",
        "run started: http://127.0.0.1:3000/runs/cccc3333-dev",
        "agent status: writing tests",
        f"PR #{pr} opened: https://github.test/{REPO}/pull/{pr}",
        f"run succeeded after 50m 00s: https://github.test/{REPO}/pull/{pr}",
        "`run:dev:revise`: run requested → dev (revise)",
        "run started: http://127.0.0.1:3000/runs/dddd4444-revise",
        "run failed after 8m 00s (agent_timeout): the agent ran over 600s",
        "`run:dev:revise`: run requested → dev (revise)",
        "run started: http://127.0.0.1:3000/runs/eeee5555-revise",
        f"PR #{pr} updated: https://github.test/{REPO}/pull/{pr}",
        "run succeeded after 20m 00s",
        f"PR #{pr} merged by bob",
    ]


def test_trace_prints_every_step_in_order(
    store: PlatformStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    monkeypatch.delenv("CODEXK8S_DAGSTER_URL", raising=False)
    expected = write_story(store, 7)
    # The dev run's usage as the spend accounting records it: the trace shows its tokens and cost.
    usage = UsageRecord(
        correlation_key(REPO, 7, "run:dev", 5), REPO, "codex", TokenCounts(1200, None, 300),
        Cost(Decimal("0.07"), "USD", CostSource.AGENT), issue_number=7, stage="dev",
    )  # fmt: skip
    record_usage(store, usage)
    assert main(["trace", "acme/Shop#7"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"acme/shop#7: {len(expected)} steps, 5 runs, 2 revise loops"
    steps = [line.split("  ", 3)[-1].strip() for line in lines[1 : 1 + len(expected)]]
    assert steps == expected
    assert "zed" not in out
    # Who did what: the approver and the reviewer by name, the platform as itself.
    assert any(line.split()[1] == "mallory" and "approval granted" in line for line in lines)
    runs = lines[lines.index("runs:") + 1 :]
    assert runs == [
        "  `run:plan` · plan · succeeded · 20m 00s · $0.50 · http://127.0.0.1:3000/runs/aaaa1111-plan",
        "  `run:dev` · dev · cancelled · 8m 00s · http://127.0.0.1:3000/runs/bbbb2222-cancel",
        "  `run:dev` · dev · succeeded · 50m 00s · 1500 tokens · $0.07 · http://127.0.0.1:3000/runs/cccc3333-dev",
        "  `run:dev:revise` · dev (revise) · failed (agent_timeout) · 8m 00s · http://127.0.0.1:3000/runs/dddd4444-revise",
        "  `run:dev:revise` · dev (revise) · succeeded · 20m 00s · http://127.0.0.1:3000/runs/eeee5555-revise",
    ]


def test_trace_without_history_or_database_says_so(
    store: PlatformStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    assert main(["trace", "acme/shop#404"]) == 1
    assert "nothing recorded for this issue" in capsys.readouterr().out
    assert main(["trace", "not-a-target"]) == 2
    assert "is not owner/repo#N" in capsys.readouterr().err
    monkeypatch.delenv("CODEXK8S_DATABASE_URL")
    assert main(["trace", "acme/shop#7"]) == 2
    assert "CODEXK8S_DATABASE_URL" in capsys.readouterr().err


def test_history_section_is_collapsed_and_keeps_the_latest_steps(store: PlatformStore) -> None:
    expected = write_story(store, 8)
    trace = issue_trace(store, REPO, 8)
    text = render_history_markdown(trace, limit=5)
    assert text.startswith("<details><summary>History</summary>")
    assert text.rstrip().endswith("</details>")
    assert f"{len(expected) - 5} earlier steps: `codexk8s trace acme/shop#8`" in text
    shown = [line for line in text.splitlines() if line.startswith("- `")]
    assert [line.split(": ", 1)[1] for line in shown] == expected[-5:]


def test_the_mcp_tool_tells_the_same_story(platform: Platform) -> None:  # noqa: F811
    expected = write_story(platform.store, platform.issue)
    data = data_of(platform.call("issue_trace", {"token": platform.token}))
    assert data["repository"] == REPO and data["number"] == platform.issue
    assert [s["text"] for s in data["steps"]] == expected
    assert data["revise_loops"] == 2
    outcomes = [(r["label"], r["outcome"]) for r in data["runs"]]
    assert ("run:dev", "canceled") in outcomes and ("run:dev:revise", "failed") in outcomes
    other = data_of(platform.call("issue_trace", {"token": platform.token, "issue": 404}))
    assert other["steps"] == []
    refused = platform.call("issue_trace", {"token": platform.token, "issue": 0})
    assert refused.is_error
