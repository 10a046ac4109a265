"""Every delivery metric of a day, computed from the audit trail, equals the figure computed independently from
the synthetic history's own record of what happened (`Truth`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
import pytest

from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.domain import delivery_metrics as dm
from codexk8s_pipelines.insight import metrics
from tests.insight.history import Truth

DAY = "2026-03-02"
START, END = metrics.day_window(DAY)
PROFILES = PlatformConfig().launch_profiles


def _in_day(at: datetime | None) -> bool:
    return at is not None and START <= at < END


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def test_the_history_is_large_and_varied(history) -> None:
    _, truth, _ = history
    assert len(truth.issues) == 1000
    outcomes = Counter(r.outcome for r in truth.runs)
    assert outcomes["succeeded"] > 1000 and outcomes["failed"] > 50 and outcomes["canceled"] > 10
    assert sum(1 for r in truth.runs if r.revise) > 100
    assert sum(1 for a in truth.approvals if a.expired) > 5
    assert sum(1 for i in truth.issues if i.merged) > 400
    assert truth.events > 15_000


def test_stage_metrics_equal_the_independent_figures(history) -> None:
    store, truth, _ = history
    expected: dict[tuple[str, str], list] = defaultdict(list)
    for run in truth.runs:
        if _in_day(run.finished):
            expected[(run.repository, run.stage)].append(run)
    result = metrics.stage_metrics(store, START, END)
    assert {(r.repository, r.stage) for r in result.rows} == set(expected)
    assert len(result.runs) == sum(len(v) for v in expected.values()) > 500
    for row in result.rows:
        runs = expected[(row.repository, row.stage)]
        durations = [(r.finished - r.started).total_seconds() for r in runs]
        first = sum(1 for r in runs if not r.revise)
        assert row.runs == len(runs)
        assert (row.first_runs, row.revise_runs) == (first, len(runs) - first)
        assert row.succeeded == sum(1 for r in runs if r.outcome == "succeeded")
        assert row.canceled == sum(1 for r in runs if r.outcome == "canceled")
        assert row.success_rate == pytest.approx(row.succeeded / len(runs), abs=1e-12)
        assert row.p50_seconds == pytest.approx(_pct(durations, 50), abs=1e-6)
        assert row.p95_seconds == pytest.approx(_pct(durations, 95), abs=1e-6)
        assert row.revise_rate == (pytest.approx((len(runs) - first) / first, abs=1e-12) if first else None)
        assert dict(row.failure_reasons) == dict(Counter(r.reason for r in runs if r.outcome == "failed"))


def test_every_run_is_counted_on_exactly_one_day(history) -> None:
    store, truth, _ = history
    total = 0
    for offset in range(7):
        day = (START + timedelta(days=offset - 1)).strftime("%Y-%m-%d")
        start, end = metrics.day_window(day)
        total += len(metrics.stage_metrics(store, start, end).runs)
    assert total == len(truth.runs)


def test_approval_latency_equals_the_independent_figures(history) -> None:
    store, truth, _ = history
    granted: dict[tuple[str, str], list[float]] = defaultdict(list)
    expired: Counter[tuple[str, str]] = Counter()
    for a in truth.approvals:
        if _in_day(a.granted):
            granted[(a.repository, a.stage)].append((a.granted - a.requested).total_seconds() / 3600)
        if _in_day(a.expired):
            expired[(a.repository, a.stage)] += 1
    summary = metrics.approval_latency(store, START, END)
    every = [x for values in granted.values() for x in values]
    assert summary.granted == len(every) > 20
    assert summary.expired == sum(expired.values()) > 0
    assert summary.p50_hours == pytest.approx(_pct(every, 50), abs=1e-9)
    assert summary.p95_hours == pytest.approx(_pct(every, 95), abs=1e-9)
    assert {(r.repository, r.stage) for r in summary.rows} == set(granted) | set(expired)
    for row in summary.rows:
        values = granted.get((row.repository, row.stage), [])
        assert (row.granted, row.expired) == (len(values), expired[(row.repository, row.stage)])
        assert row.p95_hours == (pytest.approx(_pct(values, 95), abs=1e-9) if values else None)
        assert row.p50_hours == (pytest.approx(_pct(values, 50), abs=1e-9) if values else None)


@pytest.mark.parametrize(("slo", "passes"), [(1000.0, True), (0.5, False)])
def test_the_approval_slo_is_met_or_breached(history, slo: float, passes: bool) -> None:
    store, _, _ = history
    verdict = dm.approval_slo(metrics.approval_latency(store, START, END), slo)
    assert verdict.passed is passes
    assert ("within" if passes else "above") in verdict.description
    assert bool(verdict.breaches) is (not passes)


def test_lead_time_equals_the_independent_figures(history) -> None:
    store, truth, _ = history
    merged = [i for i in truth.issues if _in_day(i.merged)]
    result = metrics.lead_time(store, START, END, PROFILES)
    assert result.untraced == []
    assert len(result.flows) == len(merged) > 50
    by_profile: dict[str, list] = defaultdict(list)
    for issue in merged:
        by_profile[issue.profile].append(issue)
    flows = {(f.repository, f.issue_number): f for f in result.flows}
    for issue in merged:
        flow = flows[(issue.repository, issue.number)]
        assert flow.profile == issue.profile
        assert flow.first_trigger_at == issue.first_trigger
        assert flow.approval_wait_seconds == pytest.approx(issue.approval_wait, abs=1e-6)
        assert flow.queue_wait_seconds == pytest.approx(issue.queue_wait, abs=1e-6)
        assert flow.working_seconds == pytest.approx(issue.working, abs=1e-6)
    assert {r.profile for r in result.rows} == set(by_profile) == {"quick-fix", "feature", "new-service"}
    for row in result.rows:
        issues = by_profile[row.profile]
        lead = [(i.merged - i.first_trigger).total_seconds() / 3600 for i in issues]
        waiting = sum(i.approval_wait + i.queue_wait for i in issues) / 3600
        working = sum(i.working for i in issues) / 3600
        assert row.issues == len(issues)
        assert row.p50_hours == pytest.approx(_pct(lead, 50), abs=1e-9)
        assert row.p95_hours == pytest.approx(_pct(lead, 95), abs=1e-9)
        assert row.waiting_hours == pytest.approx(waiting, abs=1e-9)
        assert row.approval_hours == pytest.approx(sum(i.approval_wait for i in issues) / 3600, abs=1e-9)
        assert row.queue_hours == pytest.approx(sum(i.queue_wait for i in issues) / 3600, abs=1e-9)
        assert row.working_hours == pytest.approx(working, abs=1e-9)
        assert row.other_hours == pytest.approx(sum(lead) - waiting - working, abs=1e-6)


def test_policy_bypass_rate_equals_the_independent_figures(history) -> None:
    store, truth, _ = history
    result = metrics.policy_bypass(store, START, END, "need:input")
    rates = {r.stage: r for r in result.rates}
    for stage in ("dev", "self-improve"):
        runs = [r for r in truth.runs if r.stage == stage and not r.revise and _in_day(r.finished)]
        needed = [r for r in runs if r.interventions & set(dm.INTERVENTIONS)]
        assert rates[stage].runs == len(runs) > 20
        assert rates[stage].with_intervention == len(needed)
        for kind in dm.INTERVENTIONS:
            expected = sum(1 for r in runs if kind in r.interventions)
            assert rates[stage].by_kind[kind] == expected, (stage, kind)
    kinds = Counter(k for f in result.runs for k in f.interventions)
    assert kinds["need_input"] and kinds["override"] and kinds["rerun_after_failed_precondition"]
    assert kinds["hand_edited_pr"]
    got = {f.correlation_key: set(f.interventions) for f in result.runs}
    want = {
        r.key: r.interventions & set(dm.INTERVENTIONS)
        for r in truth.runs
        if r.stage in ("dev", "self-improve") and not r.revise and _in_day(r.finished)
    }
    assert got == want


def _truth_bypass(truth: Truth, stage: str) -> float:
    runs = [r for r in truth.runs if r.stage == stage and not r.revise and _in_day(r.finished)]
    return 1 - sum(1 for r in runs if r.interventions & set(dm.INTERVENTIONS)) / len(runs)


@pytest.mark.parametrize("margin", [-0.01, 0.01])
def test_bypass_targets_pass_and_fail_at_the_threshold(history, margin: float) -> None:
    store, truth, _ = history
    result = metrics.policy_bypass(store, START, END, "need:input")
    for rate in result.rates:
        share = _truth_bypass(truth, rate.stage)
        verdict = dm.bypass_target(rate, share + margin)
        assert verdict.passed is (margin < 0)


def test_one_repositorys_reads_hold_exactly_its_keys(history) -> None:
    """With a repository the store reads only its range of keys: the same rows, facts and figures as reading every
    repository and keeping its own."""
    from codexk8s_pipelines.store import insight as q

    store, truth, _ = history
    repositories = sorted({r.repository for r in truth.runs})
    assert len(repositories) > 1
    for repo in repositories:

        def own(key: str, repo: str = repo) -> bool:
            return key.startswith(f"{repo}#")

        finished = q.finished_run_events(store, START, END, repo)
        assert finished and finished == [e for e in q.finished_run_events(store, START, END) if own(e.correlation_key)]
        approvals = q.approval_events(store, START, END, repo)
        assert approvals == [e for e in q.approval_events(store, START, END) if own(e.correlation_key)]
        issues = q.issues_finished_on_day(store, START, END, repo)
        assert issues and issues == [i for i in q.issues_finished_on_day(store, START, END) if i[0] == repo]
        every = metrics.stage_metrics(store, START, END)
        assert metrics.stage_metrics(store, START, END, repo).runs == [f for f in every.runs if f.repository == repo]
        bypass = metrics.policy_bypass(store, START, END, "need:input", repo)
        assert bypass.runs == [
            f for f in metrics.policy_bypass(store, START, END, "need:input").runs if f.repository == repo
        ]
