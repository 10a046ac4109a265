"""An agent's MCP calls are most of an issue's rows and nothing the trace, the History or a metric shows is made of
them: only `codexk8s trace --verbose` reads them (100,000 of them on one issue cost 7 s per comment update)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from codexk8s_pipelines.delivery.publish import history_for
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.issue_trace import render_trace
from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.insight.trace import issue_trace
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store import insight as q
from codexk8s_pipelines.store.database import EventRecord

REPO = "acme/shop"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _story(store: PlatformStore) -> tuple[str, str]:
    """Issue 3: a dev run with MCP calls that opened PR 30; a dev revise on the PR with MCP calls of its own."""
    dev = correlation_key(REPO, 3, "run:dev", 1)
    revise = correlation_key(REPO, 30, "run:dev:revise", 2)
    decision = {"kind": "run", "stage": "dev", "revise": False, "add_labels": []}

    def at(minutes: float) -> datetime:
        return T0 + timedelta(minutes=minutes)

    def calls(key: str, minutes: float) -> list[EventRecord]:
        return [
            EventRecord(key, "mcp.tool.called", "agent", "mcp", {"tool": "grep"}, at(minutes + i / 100))
            for i in range(50)
        ]

    rows = [
        EventRecord(dev, "run.requested", "human", "alice", decision, at(0)),
        EventRecord(dev, "run.started", "system", "dagster", {"dagster_run_id": "d1"}, at(1)),
        *calls(dev, 2),
        EventRecord(dev, "run.pr.created", "system", "dagster", {"number": 30, "url": "u"}, at(10)),
        EventRecord(dev, "run.succeeded", "system", "dagster", {}, at(11)),
        EventRecord(revise, "run.requested", "human", "bob", {**decision, "revise": True}, at(20)),
        EventRecord(revise, "run.started", "system", "dagster", {"dagster_run_id": "d2"}, at(21)),
        *calls(revise, 22),
        EventRecord(revise, "run.succeeded", "system", "dagster", {}, at(30)),
    ]  # fmt: skip
    store.append_events(rows)
    return dev, revise


def test_the_trace_and_the_history_read_no_mcp_row_unless_verbose(store: PlatformStore) -> None:
    _story(store)
    story = q.issue_story_events(store, REPO, 3)
    assert [e.event_type for e in story if e.event_type.startswith("mcp.")] == []
    assert len(story) == 7  # the issue's and its PR's own rows, nothing else
    verbose = q.issue_story_events(store, REPO, 3, verbose=True)
    assert sum(1 for e in verbose if e.event_type.startswith("mcp.")) == 100
    assert [e for e in verbose if not e.event_type.startswith("mcp.")] == story
    assert list(q.stories_events(store, [(REPO, 3)]).values()) == [story]

    text = render_trace(issue_trace(store, REPO, 3))
    assert text.splitlines()[0] == "acme/shop#3: 7 steps, 2 runs, 1 revise loops"
    assert "mcp.tool.called" in render_trace(issue_trace(store, REPO, 3, verbose=True))
    history = history_for(store, REPO, 3)
    assert history is not None and history.count("\n- `") == 7 and "mcp" not in history


def test_the_days_finished_runs_are_read_without_their_mcp_rows(store: PlatformStore) -> None:
    dev, revise = _story(store)
    start, end = metrics.day_window("2026-03-02")
    events = q.finished_run_events(store, start, end)
    assert {e.correlation_key for e in events} == {dev, revise}
    assert [e.event_type for e in events if e.event_type.startswith("mcp.")] == []
    assert len(events) == 7
    assert [(r.stage, r.runs, r.succeeded) for r in metrics.stage_metrics(store, start, end).rows] == [("dev", 2, 2)]
