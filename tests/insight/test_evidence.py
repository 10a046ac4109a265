"""The self-improve evidence takes its numbers from the delivery metrics: the issue and the dashboards agree."""

from __future__ import annotations

from collections import Counter

import numpy as np

from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.insight.evidence import apply, delivery_evidence, render_targets
from codexk8s_pipelines.store.evidence import RunEvidence
from tests.insight.test_metrics import END, START

REPO = "acme/shop"


def test_evidence_numbers_equal_the_metrics_and_the_truth(history) -> None:
    store, truth, _ = history
    delivery = delivery_evidence(store, PlatformConfig(), REPO, START, END)
    evidence = apply(RunEvidence(REPO, START, END), delivery)
    runs = [r for r in truth.runs if r.repository == REPO and START <= r.finished < END]
    assert evidence.finished == len(runs)
    assert evidence.by_status == dict(Counter(r.outcome for r in runs))
    assert dict(evidence.failures_by_reason) == dict(Counter(r.reason for r in runs if r.outcome == "failed"))
    assert dict(evidence.revise_by_stage) == dict(Counter(r.stage for r in runs if r.revise))
    slowest = evidence.slowest_stages[0]
    durations = [(r.finished - r.started).total_seconds() for r in runs if r.stage == slowest.stage]
    assert slowest.median_seconds == float(np.percentile(durations, 50))
    assert slowest.max_seconds == max(durations)
    # The dashboards' rows of the same window, restricted to the repository, give the same figures.
    dashboard = [r for r in metrics.stage_metrics(store, START, END).rows if r.repository == REPO]
    assert sum(r.runs for r in dashboard) == evidence.finished
    assert sum(r.failed for r in dashboard) == evidence.by_status["failed"]
    approvals = metrics.approval_latency(store, START, END, REPO)
    assert delivery.approvals.p95_hours == approvals.p95_hours
    assert {r.repository for r in approvals.rows} == {REPO}


def test_targets_section_gives_the_checks_verdicts(history) -> None:
    store, _, _ = history
    strict = PlatformConfig.model_validate({"slo": {"approval_latency_p95_hours": 0.1, "dev_without_bypass": 1.0}})
    text = render_targets(delivery_evidence(store, strict, REPO, START, END))
    lines = text.splitlines()
    assert lines[0] == "### Delivery targets"
    approval = next(line for line in lines if line.startswith("| approval latency p95"))
    dev = next(line for line in lines if line.startswith("| run:dev |"))
    assert approval.endswith("| missed |") and dev.endswith("| missed |")
    lenient = PlatformConfig.model_validate({"slo": {"approval_latency_p95_hours": 1000, "dev_without_bypass": 0}})
    text = render_targets(delivery_evidence(store, lenient, REPO, START, END))
    assert "| approval latency p95" in text and text.count("| met |") >= 2
