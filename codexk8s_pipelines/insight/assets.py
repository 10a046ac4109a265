"""The delivery metric assets: one daily partition per UTC day, each with a table, a plot and asset checks.

`stage_metrics`, `approval_latency`, `lead_time` and `policy_bypass_rate` read the platform database's audit trail
(`insight/metrics.py`); their checks hold the targets of `slo:` in codexk8s.yaml, and each check's description
links to the section of docs/runbook.md that says what a failure means, where to look and what to do.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from ..domain import delivery_metrics as dm
from ..resources import PlatformConfigResource, PlatformDatabase
from . import metrics
from .plots import bar_chart, markdown_image

START_DATE = "2026-01-01"
DAILY = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
GROUP = "delivery_insight"
RUNBOOK = "docs/runbook.md"


def runbook(anchor: str) -> str:
    return f"{RUNBOOK}#{anchor}"


def check_spec(name: str, asset: str, what: str, anchor: str, blocking: bool = False) -> dg.AssetCheckSpec:
    """An asset check whose description says what it holds and where the runbook explains a failure."""
    return dg.AssetCheckSpec(
        name, asset=asset, description=f"{what} When it fails: {runbook(anchor)}", blocking=blocking
    )


CHECKS = {
    "stage_runs_traced": check_spec(
        "stage_runs_traced", "stage_metrics",
        "Every run that finished this day has a recorded start (Dagster run) and a stage.", "check-stage_runs_traced",
    ),
    "failure_reasons_known": check_spec(
        "failure_reasons_known", "stage_metrics",
        "Every failed run of this day says why (a reason code, not `unknown`).", "check-failure_reasons_known",
    ),
    "approval_latency_slo": check_spec(
        "approval_latency_slo", "approval_latency",
        "The p95 of approval latency (approval.requested → approval.granted) is within "
        "slo.approval_latency_p95_hours.", "check-approval_latency_slo",
    ),
    "no_expired_approvals": check_spec(
        "no_expired_approvals", "approval_latency",
        "No approval request expired this day.", "check-no_expired_approvals",
    ),
    "merges_traced": check_spec(
        "merges_traced", "lead_time",
        "Every PR merged this day traces back to a trigger label on its issue (since the issue's previous merge).",
        "check-merges_traced",
    ),
    "dev_without_bypass": check_spec(
        "dev_without_bypass", "policy_bypass_rate",
        "At least slo.dev_without_bypass (default 95%) of first run:dev runs need no manual intervention.",
        "check-dev_without_bypass",
    ),
    "self_improve_without_bypass": check_spec(
        "self_improve_without_bypass", "policy_bypass_rate",
        "At least slo.self_improve_without_bypass (default 85%) of first run:self-improve runs need no manual "
        "intervention.", "check-self_improve_without_bypass",
    ),
}  # fmt: skip


def _specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [spec for spec in CHECKS.values() if spec.asset_key == dg.AssetKey(asset)]


def _result(name: str, passed: bool, description: str, severity: dg.AssetCheckSeverity, **extra: Any):
    spec = CHECKS[name]
    metadata = {"summary": description, "runbook": dg.MetadataValue.url(runbook(f"check-{name}")), **extra}
    return dg.AssetCheckResult(
        check_name=name, asset_key=spec.asset_key, passed=passed, severity=severity, metadata=metadata
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> dg.TableMetadataValue:
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns])
    records = [dg.TableRecord(dict(zip([c for c, _ in columns], row, strict=True))) for row in rows]
    return dg.MetadataValue.table(records=records, schema=schema)


# -- stage_metrics ------------------------------------------------------------------------------------------
@dg.asset(
    name="stage_metrics",
    partitions_def=DAILY,
    group_name=GROUP,
    check_specs=_specs("stage_metrics"),
    kinds={"postgres"},
    description="Per stage and repository, the runs that finished this UTC day (a run re-executed from the Dagster "
    "UI: its last attempt): success rate, failure reasons, p50/p95 duration (run started → finished) and the "
    "revise rate (revise runs per first run).",
)
def stage_metrics(context: dg.AssetExecutionContext, platform_db: PlatformDatabase) -> dg.MaterializeResult:
    start, end = metrics.day_window(context.partition_key)
    result = metrics.stage_metrics(platform_db.store(), start, end)
    rows = result.rows
    data = [
        (
            r.repository, r.stage, r.runs, r.first_runs, r.revise_runs, r.succeeded, r.failed, r.canceled,
            round(r.success_rate, 4), _round(r.p50_seconds, 1), _round(r.p95_seconds, 1), _round(r.revise_rate, 4),
            ", ".join(f"{k} {n}" for k, n in r.failure_reasons.items()),
        )
        for r in rows
    ]  # fmt: skip
    columns = [
        ("repository", "string"), ("stage", "string"), ("runs", "int"), ("first_runs", "int"),
        ("revise_runs", "int"), ("succeeded", "int"), ("failed", "int"), ("canceled", "int"),
        ("success_rate", "float"), ("p50_seconds", "float"), ("p95_seconds", "float"), ("revise_rate", "float"),
        ("failure_reasons", "string"),
    ]  # fmt: skip
    labels = [f"{r.repository} {r.stage}" for r in rows]
    png = bar_chart(
        f"Stage durations {context.partition_key}", labels,
        {"p50": [_minutes(r.p50_seconds) for r in rows], "p95": [_minutes(r.p95_seconds) for r in rows]},
        "minutes", "No run finished this day",
    )  # fmt: skip
    untimed = [f.correlation_key for f in result.runs if f.started_at is None]
    unknown = [f.correlation_key for f in result.runs if f.outcome == "failed" and f.reason == "unknown"]
    total = len(result.runs)
    return dg.MaterializeResult(
        metadata={
            "runs": total,
            "succeeded": sum(r.succeeded for r in rows),
            "failed": sum(r.failed for r in rows),
            "stages": table(columns, data),
            "durations_plot": dg.MetadataValue.md(markdown_image(png, "stage durations")),
        },
        check_results=[
            _result(
                "stage_runs_traced", not untimed,
                f"{total - len(untimed)} of {total} finished runs have a recorded start",
                dg.AssetCheckSeverity.WARN, untraced=dg.MetadataValue.json(untimed[:50]),
            ),
            _result(
                "failure_reasons_known", not unknown,
                f"{len(unknown)} failed runs without a reason", dg.AssetCheckSeverity.WARN,
                runs=dg.MetadataValue.json(unknown[:50]),
            ),
        ],
    )  # fmt: skip


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60.0


# -- approval_latency ---------------------------------------------------------------------------------------
@dg.asset(
    name="approval_latency",
    partitions_def=DAILY,
    group_name=GROUP,
    check_specs=_specs("approval_latency"),
    kinds={"postgres"},
    description="Approvals granted this UTC day: latency from approval.requested to approval.approved, p50/p95 "
    "per stage and repository, and the requests that expired this day. Checked against "
    "slo.approval_latency_p95_hours.",
)
def approval_latency(
    context: dg.AssetExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> dg.MaterializeResult:
    slo = platform_config.get().slo.approval_latency_p95_hours
    start, end = metrics.day_window(context.partition_key)
    summary = metrics.approval_latency(platform_db.store(), start, end)
    verdict = dm.approval_slo(summary, slo)
    columns = [
        ("repository", "string"), ("stage", "string"), ("granted", "int"), ("expired", "int"),
        ("p50_hours", "float"), ("p95_hours", "float"), ("max_hours", "float"),
    ]  # fmt: skip
    data = [
        (r.repository, r.stage, r.granted, r.expired, _round(r.p50_hours, 3), _round(r.p95_hours, 3),
         _round(r.max_hours, 3))
        for r in summary.rows
    ]  # fmt: skip
    png = bar_chart(
        f"Approval latency {context.partition_key} (SLO p95 ≤ {slo:g} h)",
        [f"{r.repository} {r.stage}" for r in summary.rows],
        {"p50": [r.p50_hours for r in summary.rows], "p95": [r.p95_hours for r in summary.rows]},
        "hours", "No approval granted or expired this day",
    )  # fmt: skip
    return dg.MaterializeResult(
        metadata={
            "granted": summary.granted,
            "expired": summary.expired,
            "p50_hours": _round(summary.p50_hours, 3),
            "p95_hours": _round(summary.p95_hours, 3),
            "slo_p95_hours": slo,
            "approvals": table(columns, data),
            "latency_plot": dg.MetadataValue.md(markdown_image(png, "approval latency")),
        },
        check_results=[
            _result(
                "approval_latency_slo", verdict.passed, verdict.description, dg.AssetCheckSeverity.ERROR,
                p95_hours=_round(summary.p95_hours, 3), slo_hours=slo,
                groups_above_slo=dg.MetadataValue.json(list(verdict.breaches)),
            ),
            _result(
                "no_expired_approvals", summary.expired == 0, f"{summary.expired} approval requests expired",
                dg.AssetCheckSeverity.WARN,
            ),
        ],
    )  # fmt: skip


# -- lead_time ----------------------------------------------------------------------------------------------
@dg.asset(
    name="lead_time",
    partitions_def=DAILY,
    group_name=GROUP,
    check_specs=_specs("lead_time"),
    kinds={"postgres"},
    description="PRs merged this UTC day: lead time from the issue's first trigger label (since its previous "
    "merge) to the merge, and how it was spent, each moment counted once: working (any agent run under way), else "
    "waiting (approval, then queue), else other; per launch profile.",
)
def lead_time(
    context: dg.AssetExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> dg.MaterializeResult:
    platform = platform_config.get()
    start, end = metrics.day_window(context.partition_key)
    result = metrics.lead_time(
        platform_db.store(), start, end, platform.launch_profiles, platform.label_scheme().run_prefix
    )
    columns = [
        ("profile", "string"), ("issues", "int"), ("p50_hours", "float"), ("p95_hours", "float"),
        ("waiting_hours", "float"), ("approval_hours", "float"), ("queue_hours", "float"), ("working_hours", "float"),
        ("other_hours", "float"), ("waiting_share", "float"),
    ]  # fmt: skip
    data = [
        (r.profile, r.issues, _round(r.p50_hours, 3), _round(r.p95_hours, 3), _round(r.waiting_hours, 3),
         _round(r.approval_hours, 3), _round(r.queue_hours, 3), _round(r.working_hours, 3), _round(r.other_hours, 3),
         _round(r.waiting_share, 4))
        for r in result.rows
    ]  # fmt: skip
    png = bar_chart(
        f"Lead time {context.partition_key} (hours, summed over issues)", [r.profile for r in result.rows],
        {"approval": [r.approval_hours for r in result.rows], "queue": [r.queue_hours for r in result.rows],
         "working": [r.working_hours for r in result.rows],
         "other": [r.other_hours for r in result.rows]},
        "hours", "No PR merged this day",
    )  # fmt: skip
    untraced = [f"{repo}#{n}" for repo, n in result.untraced]
    return dg.MaterializeResult(
        metadata={
            "merged_issues": len(result.flows),
            "profiles": table(columns, data),
            "lead_time_plot": dg.MetadataValue.md(markdown_image(png, "lead time")),
        },
        check_results=[
            _result(
                "merges_traced", not untraced,
                f"{len(untraced)} of {len(untraced) + len(result.flows)} merged PRs have no trigger label recorded",
                dg.AssetCheckSeverity.WARN, issues=dg.MetadataValue.json(untraced[:50]),
            )
        ],
    )  # fmt: skip


# -- policy_bypass_rate -------------------------------------------------------------------------------------
@dg.asset(
    name="policy_bypass_rate",
    partitions_def=DAILY,
    group_name=GROUP,
    check_specs=_specs("policy_bypass_rate"),
    kinds={"postgres"},
    description="The share of first run:dev and run:self-improve runs finished this UTC day that needed a manual "
    "intervention: need:input, a launch by hand (override), a rerun after failed_precondition, a hand-edited PR.",
)
def policy_bypass_rate(
    context: dg.AssetExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> dg.MaterializeResult:
    platform = platform_config.get()
    start, end = metrics.day_window(context.partition_key)
    result = metrics.policy_bypass(platform_db.store(), start, end, platform.label_scheme().need_input)
    columns = [("stage", "string"), ("runs", "int"), ("with_intervention", "int"), ("bypass_rate", "float")]
    columns += [(k, "int") for k in dm.INTERVENTIONS]
    data = [
        (r.stage, r.runs, r.with_intervention, _round(r.rate, 4), *(r.by_kind.get(k, 0) for k in dm.INTERVENTIONS))
        for r in result.rates
    ]
    png = bar_chart(
        f"Runs without a manual intervention {context.partition_key}", [r.stage for r in result.rates],
        {"share": [r.without_bypass for r in result.rates]}, "share of first runs", "No run finished this day",
    )  # fmt: skip
    checks = []
    verdicts = metrics.bypass_verdicts(platform, result)
    for name, stage in (("dev_without_bypass", "dev"), ("self_improve_without_bypass", "self-improve")):
        target, rate, verdict = verdicts[stage].target, verdicts[stage].rate, verdicts[stage].verdict
        needed = [f.correlation_key for f in result.runs if f.stage == stage and f.interventions]
        checks.append(
            _result(
                name,
                verdict.passed,
                verdict.description,
                dg.AssetCheckSeverity.ERROR,
                target=target,
                runs=rate.runs,
                interventions=dg.MetadataValue.json(list(verdict.breaches)),
                examples=dg.MetadataValue.json(needed[:20]),
            )
        )
    return dg.MaterializeResult(
        metadata={
            "runs": sum(r.runs for r in result.rates),
            "bypass": table(columns, data),
            "bypass_plot": dg.MetadataValue.md(markdown_image(png, "runs without a manual intervention")),
        },
        check_results=checks,
    )


INSIGHT_ASSETS = [stage_metrics, approval_latency, lead_time, policy_bypass_rate]
insight_daily_job = dg.define_asset_job(
    "delivery_insight_daily", selection=INSIGHT_ASSETS, tags={"codexk8s/kind": "insight"}
)
# Each day, just after midnight UTC, yesterday's partition of every metric.
insight_daily_schedule = dg.build_schedule_from_partitioned_job(
    insight_daily_job, minute_of_hour=17, hour_of_day=0, default_status=dg.DefaultScheduleStatus.RUNNING
)
