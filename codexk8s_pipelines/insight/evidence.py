"""The self-improve evidence from the delivery metrics: the evidence issue and the insight assets compute their
numbers with the same functions (`insight/metrics.py`), so the issue and the dashboards never disagree."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..config import PlatformConfig
from ..domain import delivery_metrics as dm
from ..store import PlatformStore
from ..store.evidence import RunEvidence, StageTiming
from . import metrics

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DeliveryEvidence:
    stages: metrics.StageMetricsResult
    approvals: dm.ApprovalSummary
    approval_slo: dm.SloVerdict
    bypass: dict[str, metrics.BypassVerdict]


def delivery_evidence(
    store: PlatformStore, platform: PlatformConfig, repository: str, since: datetime | None, until: datetime
) -> DeliveryEvidence:
    """The metrics of one repository over (since, until]: the self-improve window instead of one day."""
    start = since or EPOCH
    approvals = metrics.approval_latency(store, start, until, repository)
    bypass = metrics.policy_bypass(store, start, until, platform.label_scheme().need_input, repository)
    return DeliveryEvidence(
        metrics.stage_metrics(store, start, until, repository),
        approvals,
        dm.approval_slo(approvals, platform.slo.approval_latency_p95_hours),
        metrics.bypass_verdicts(platform, bypass),
    )


def apply(evidence: RunEvidence, delivery: DeliveryEvidence) -> RunEvidence:
    """The run evidence with its counts, failures, revise runs and slowest stages taken from the metrics."""
    runs = delivery.stages.runs
    rows = delivery.stages.rows
    by_status = Counter(f.outcome for f in runs if f.outcome)
    failures = Counter(f.reason or "unknown" for f in runs if f.outcome == "failed")
    revise: Counter[str] = Counter()
    for row in rows:
        revise[row.stage] += row.revise_runs
    timed = [r for r in rows if r.p50_seconds is not None]
    longest = {
        r.stage: max((f.duration_seconds or 0.0) for f in runs if f.stage == r.stage and f.repository == r.repository)
        for r in timed
    }
    slowest = sorted(timed, key=lambda r: (-(r.p50_seconds or 0.0), r.stage))[:5]
    return replace(
        evidence,
        finished=len(runs),
        by_status=dict(by_status),
        failures_by_reason=sorted(failures.items(), key=lambda x: (-x[1], x[0])),
        revise_by_stage=sorted(((s, n) for s, n in revise.items() if n), key=lambda x: (-x[1], x[0])),
        slowest_stages=[StageTiming(r.stage, r.runs, r.p50_seconds or 0.0, longest[r.stage]) for r in slowest],
    )


def render_targets(delivery: DeliveryEvidence) -> str:
    """A "Delivery targets" section for the evidence issue: the same verdicts as the assets' checks."""
    lines = ["### Delivery targets", "", "| target | figure | verdict |", "|---|---|---|"]
    slo = delivery.approval_slo
    p95 = delivery.approvals.p95_hours
    lines.append(
        f"| approval latency p95 | {'—' if p95 is None else f'{p95:.2f} h'} over {delivery.approvals.granted} "
        f"approvals, {delivery.approvals.expired} expired | {'met' if slo.passed else 'missed'} |"
    )
    for stage, bypass in delivery.bypass.items():
        share = bypass.rate.without_bypass
        figure = "no run" if share is None else f"{share:.1%} of {bypass.rate.runs} without a manual intervention"
        lines.append(f"| run:{stage} | {figure} | {'met' if bypass.verdict.passed else 'missed'} |")
    lines += ["", "What a missed target means and what to do: docs/runbook.md (section *Asset checks*)."]
    return "\n".join(lines) + "\n"
