"""A run is reported as its last attempt: a blocked run is a failure (agent_blocked) in every figure and in the
trace; a run re-executed from the Dagster UI shows the outcome, duration and Dagster link of its last attempt, and
each finish in the trace is timed against its own start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.domain import delivery_metrics as dm
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.issue_trace import render_trace
from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.insight.trace import issue_trace
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord

REPO = "acme/shop"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = metrics.day_window("2026-03-02")
DEV = {"kind": "run", "stage": "dev", "revise": False, "add_labels": []}


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(
    store: PlatformStore, key: str, event_type: str, minutes: float, actor: str = "dagster", **payload: object
) -> None:
    store.append_event(key, event_type, "human" if actor != "dagster" else "system", actor, payload, at=at(minutes))


@pytest.fixture(autouse=True)
def _local_dagster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEXK8S_DAGSTER_URL", raising=False)


def test_a_blocked_run_is_a_failure_in_every_figure_and_in_the_trace(store: PlatformStore) -> None:
    key = correlation_key(REPO, 5, "run:dev", 1)
    store.register_run(RunRecord(key, REPO, "dev", "dev", False, 5))
    ev(store, key, "run.requested", 0, "alice", **DEV)
    ev(store, key, "run.started", 1, dagster_run_id="r1")
    ev(store, key, "run.agent.finished", 30, status="blocked", reason="agent_blocked", duration_seconds=1740.0)
    # What stage_jobs writes when the agent reports blocked (runs.status failed).
    ev(store, key, "run.blocked", 30, reason="agent_blocked", message="which database?")

    (row,) = metrics.stage_metrics(store, *DAY).rows
    assert (row.stage, row.runs, row.succeeded, row.failed, row.success_rate) == ("dev", 1, 0, 1, 0.0)
    assert dict(row.failure_reasons) == {"agent_blocked": 1}
    assert row.p50_seconds == 29 * 60
    rates = {r.stage: r for r in metrics.policy_bypass(store, *DAY, "need:input").rates}
    assert rates["dev"].runs == 1

    text = render_trace(issue_trace(store, REPO, 5))
    assert "  2026-03-02T09:30:00Z  dagster  run blocked after 29m 00s (agent_blocked): which database?" in text
    assert text.splitlines()[-1] == (
        "  `run:dev` · dev · failed (agent_blocked) · 29m 00s · http://127.0.0.1:3000/runs/r1"
    )
    # Without a reason in its payload, it is still a failure: the agent's (a reason the runbook explains).
    bare = [
        dm.AuditEvent(1, key, "run.started", "system", "d", {}, at(0)),
        dm.AuditEvent(2, key, "run.blocked", "system", "d", {}, at(5)),
    ]
    fact = dm.run_fact(key, bare)
    assert fact is not None and (fact.outcome, fact.reason) == ("failed", "agent_blocked")


def test_a_reexecuted_run_is_reported_as_its_last_attempt(store: PlatformStore) -> None:
    key = correlation_key(REPO, 6, "run:dev", 1)
    ev(store, key, "run.requested", 0, "alice", **DEV)
    ev(store, key, "run.started", 1, dagster_run_id="first")
    ev(store, key, "run.failed", 3, reason="timeout", message="t/o")
    ev(store, key, "run.started", 60, dagster_run_id="second")  # re-executed from the Dagster UI
    ev(store, key, "run.succeeded", 120)

    (row,) = metrics.stage_metrics(store, *DAY).rows
    assert (row.runs, row.succeeded, row.failed, dict(row.failure_reasons)) == (1, 1, 0, {})
    assert row.p50_seconds == 3600
    # The relaunch still counts where it counted: an override of the label policy.
    rates = {r.stage: r for r in metrics.policy_bypass(store, *DAY, "need:input").rates}
    assert (rates["dev"].runs, rates["dev"].by_kind["override"]) == (1, 1)

    lines = render_trace(issue_trace(store, REPO, 6)).splitlines()
    steps = [line.split("  ", 3)[-1].strip() for line in lines[1:6]]
    assert steps == [
        "`run:dev`: run requested → dev",
        "run started: http://127.0.0.1:3000/runs/first",
        "run failed after 2m 00s (timeout): t/o",
        "run started: http://127.0.0.1:3000/runs/second",
        "run succeeded after 1h 00m",
    ]
    assert lines[-1] == "  `run:dev` · dev · succeeded · 1h 00m · http://127.0.0.1:3000/runs/second"


def test_a_run_started_again_is_running_until_its_new_attempt_finishes() -> None:
    key = "acme/shop#6:run:dev:1"
    rows = [
        dm.AuditEvent(1, key, "run.started", "system", "d", {"dagster_run_id": "first"}, at(0)),
        dm.AuditEvent(2, key, "run.failed", "system", "d", {"reason": "timeout"}, at(2)),
        dm.AuditEvent(3, key, "run.failed.outside_ops", "system", "d", {}, at(3)),  # the same attempt: ignored
        dm.AuditEvent(4, key, "run.started", "system", "d", {"dagster_run_id": "second"}, at(10)),
    ]
    fact = dm.run_fact(key, rows)
    assert fact is not None
    assert (fact.outcome, fact.finished_at, fact.started_at, fact.dagster_run_id) == (None, None, at(10), "second")
    assert fact.attempts == ((at(0), at(2)), (at(10), None)) and fact.relaunched
    assert dm.finished_between([fact], at(-60), at(60)) == []
