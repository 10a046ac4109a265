"""The lead time of a merge, hand-computed on small histories: each moment counted once (working, else waiting,
else other, never negative), an approval request withdrawn ends its wait, every merge of a reopened issue has its
own lead time, and a PR of an off-path stage is filed under that stage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.issue_trace import render_trace
from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.insight.trace import issue_trace
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord

REPO = "acme/shop"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PROFILES = {"quick-fix": ("intake", "plan", "dev"), "feature": ("intake", "prd", "design", "plan", "dev")}
DEV = {"kind": "run", "stage": "dev", "revise": False, "add_labels": []}
MINUTE = 1 / 60  # hours


def ev(
    store: PlatformStore, key: str, event_type: str, minutes: float, actor: str = "dagster", **payload: object
) -> None:
    actor_type = "system" if actor == "dagster" else "human"
    store.append_event(key, event_type, actor_type, actor, payload, at=T0 + timedelta(minutes=minutes))


def run(store: PlatformStore, key: str, requested: float, started: float, finished: float, **decision: object) -> None:
    ev(store, key, "run.requested", requested, "alice", **{**DEV, **decision})
    ev(store, key, "run.started", started, dagster_run_id=key[-8:])
    ev(store, key, "run.succeeded", finished)


def merge(store: PlatformStore, issue: int, pr: int, minutes: float) -> None:
    ev(store, correlation_key(REPO, issue, "pr:merged", pr), "pr.merged", minutes, "bob", number=pr, merged_by="bob")


def test_parallel_work_is_counted_once_and_other_is_never_negative(store: PlatformStore) -> None:
    dev = correlation_key(REPO, 7, "run:dev", 1)
    run(store, dev, 0, 1, 61)  # queued 1 min, works 60 min
    ev(store, dev, "run.pr.created", 60, number=70, url="u")
    # On the PR, from minute 62 to 122: a reviewer and a dev revise at once, and an approval for qa asked for
    # meanwhile: one hour of work, no waiting.
    review = correlation_key(REPO, 70, "need:reviewer", 2)
    store.register_run(RunRecord(review, REPO, "reviewer", None, False, 7, 70))
    run(store, review, 62, 62, 122, stage=None)
    run(store, correlation_key(REPO, 70, "run:dev:revise", 3), 62, 62, 122, revise=True)
    ev(store, correlation_key(REPO, 7, "run:qa", 4), "approval.requested", 62, "alice",
       **{**DEV, "stage": "qa", "kind": "approval_required"})  # fmt: skip
    merge(store, 7, 70, 122)

    (row,) = metrics.lead_time(store, *metrics.day_window("2026-03-02"), PROFILES).rows
    assert (row.profile, row.issues, row.p50_hours) == ("quick-fix", 1, pytest.approx(122 * MINUTE))
    assert row.working_hours == pytest.approx(2.0)  # minutes 1-61 and 62-122
    assert (row.approval_hours, row.queue_hours) == (0.0, pytest.approx(MINUTE))
    assert row.waiting_hours == pytest.approx(MINUTE)
    assert row.other_hours == pytest.approx(MINUTE)  # minute 61-62: nobody at work, nothing awaited
    assert row.waiting_share == pytest.approx(1 / 122)


def test_a_withdrawn_approval_request_waits_only_until_it_is_withdrawn(store: PlatformStore) -> None:
    dev = correlation_key(REPO, 11, "run:dev", 1)
    ev(store, dev, "approval.requested", 0, "alice", **{**DEV, "kind": "approval_required"})
    # The trigger label is taken off, then state:approved: the sensor closes the request (sensors/intake.py).
    ev(store, dev, "approval.withdrawn", 10, "bob", reason="approval_withdrawn", message="run:dev was taken off")
    run(store, correlation_key(REPO, 11, "run:plan", 2), 20, 21, 60, stage="plan")
    merge(store, 11, 110, 24 * 60)

    (row,) = metrics.lead_time(store, *metrics.day_window("2026-03-03"), PROFILES).rows
    assert row.approval_hours == pytest.approx(10 * MINUTE)
    assert (row.queue_hours, row.working_hours) == (pytest.approx(MINUTE), pytest.approx(39 * MINUTE))
    assert row.other_hours == pytest.approx(24 - 50 * MINUTE)
    text = render_trace(issue_trace(store, REPO, 11))
    assert "  2026-03-02T09:10:00Z  bob      approval request withdrawn: run:dev was taken off" in text.splitlines()


def test_every_merge_of_a_reopened_issue_has_its_own_lead_time(store: PlatformStore) -> None:
    day = 24 * 60
    run(store, correlation_key(REPO, 8, "run:dev", 1), 0, 1, 30)
    merge(store, 8, 80, 60)
    # Reopened three days later: a second dev run, a second PR merged.
    run(store, correlation_key(REPO, 8, "run:dev", 2), 3 * day, 3 * day + 1, 3 * day + 30)
    merge(store, 8, 81, 3 * day + 60)
    # A fourth day: a PR merged with no trigger label since the last merge (work outside the platform).
    merge(store, 8, 82, 4 * day)

    first = metrics.lead_time(store, *metrics.day_window("2026-03-02"), PROFILES)
    (flow,) = first.flows
    assert (flow.pr_number, flow.lead_seconds, flow.working_seconds) == (80, 3600, 29 * 60)
    second = metrics.lead_time(store, *metrics.day_window("2026-03-05"), PROFILES)
    assert second.untraced == []
    (flow,) = second.flows
    assert (flow.pr_number, flow.first_trigger_at) == (81, T0 + timedelta(minutes=3 * day))
    assert (flow.lead_seconds, flow.queue_wait_seconds, flow.working_seconds) == (3600, 60, 29 * 60)
    assert flow.other_seconds == 30 * 60
    (row,) = second.rows
    assert (row.profile, row.issues, row.p50_hours) == ("quick-fix", 1, pytest.approx(1.0))
    outside = metrics.lead_time(store, *metrics.day_window("2026-03-06"), PROFILES)
    assert (outside.flows, outside.untraced) == ([], [(REPO, 8)])


def test_a_merged_pr_of_an_off_path_stage_is_filed_under_that_stage(store: PlatformStore) -> None:
    key = correlation_key(REPO, 12, "run:self-improve", 1)
    run(store, key, 0, 1, 31, stage="self-improve")
    ev(store, key, "run.pr.created", 30, number=120, url="u")
    merge(store, 12, 120, 90)

    result = metrics.lead_time(store, *metrics.day_window("2026-03-02"), PlatformConfig().launch_profiles)
    assert [(r.profile, r.issues) for r in result.rows] == [("self-improve", 1)]


def test_an_approval_after_the_request_expired_reads_as_such(store: PlatformStore) -> None:
    dev = correlation_key(REPO, 12, "run:dev", 1)
    ev(store, dev, "approval.requested", 0, "alice", **{**DEV, "kind": "approval_required"})
    ev(store, dev, "approval.expired", 60)
    ev(store, dev, "approval.late", 90, "bob", event_id=5)
    lines = render_trace(issue_trace(store, REPO, 12)).splitlines()
    assert "  2026-03-02T10:30:00Z  bob      approval came after the request had expired: nothing started" in lines
