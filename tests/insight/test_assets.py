"""The daily assets materialise a partition over the synthetic history: tables, plots, and checks that pass or fail
with the configured targets, each failure pointing at its runbook section."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.insight.assets import CHECKS, INSIGHT_ASSETS, insight_daily_schedule
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from tests.insight.test_metrics import DAY, END, START, _truth_bypass

REPO_ROOT = Path(__file__).resolve().parents[2]


def _materialize(history, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slo: str) -> dg.ExecuteInProcessResult:
    _, _, url = history
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"slo:\n{slo}")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    load_config_from_environment.cache_clear()
    resources = {"platform_db": PlatformDatabase(url=url), "platform_config": PlatformConfigResource()}
    result = dg.materialize(INSIGHT_ASSETS, partition_key=DAY, resources=resources, raise_on_error=False)
    assert result.success
    return result


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_targets_met_pass_every_check_that_holds_one(history, tmp_path: Path, monkeypatch) -> None:
    _, truth, _ = history
    result = _materialize(
        history, tmp_path, monkeypatch,
        "  approval_latency_p95_hours: 1000\n  dev_without_bypass: 0.5\n  self_improve_without_bypass: 0.5\n",
    )  # fmt: skip
    checks = _checks(result)
    assert set(checks) == set(CHECKS)
    for name in ("approval_latency_slo", "dev_without_bypass", "self_improve_without_bypass", "stage_runs_traced"):
        assert checks[name].passed, name
    # Some approvals expired that day: that check says so (a warning, with its runbook section).
    assert not checks["no_expired_approvals"].passed
    assert checks["no_expired_approvals"].severity == dg.AssetCheckSeverity.WARN
    meta = {
        e.materialization.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    stages = meta["stage_metrics"]["stages"].value
    assert isinstance(stages, dg.TableMetadataValue)
    day_runs = [r for r in truth.runs if START <= r.finished < END]
    assert sum(rec.data["runs"] for rec in stages.records) == len(day_runs) == meta["stage_metrics"]["runs"].value
    for key, plot in (("stage_metrics", "durations_plot"), ("approval_latency", "latency_plot"),
                      ("lead_time", "lead_time_plot"), ("policy_bypass_rate", "bypass_plot")):  # fmt: skip
        assert meta[key][plot].value.startswith("![")
        assert "data:image/png;base64," in meta[key][plot].value
    summary = metrics.approval_latency(history[0], START, END)
    assert meta["approval_latency"]["p95_hours"].value == pytest.approx(summary.p95_hours, abs=1e-3)


def test_a_breached_slo_and_missed_targets_fail_their_checks(history, tmp_path: Path, monkeypatch) -> None:
    _, truth, _ = history
    dev, self_improve = _truth_bypass(truth, "dev"), _truth_bypass(truth, "self-improve")
    result = _materialize(
        history, tmp_path, monkeypatch,
        f"  approval_latency_p95_hours: 0.5\n  dev_without_bypass: {min(1.0, dev + 0.01)}\n"
        f"  self_improve_without_bypass: {min(1.0, self_improve + 0.01)}\n",
    )  # fmt: skip
    checks = _checks(result)
    for name in ("approval_latency_slo", "dev_without_bypass", "self_improve_without_bypass"):
        assert not checks[name].passed, name
        assert checks[name].severity == dg.AssetCheckSeverity.ERROR
        assert checks[name].metadata["runbook"].value == f"docs/runbook.md#check-{name}"
    assert "above the SLO of 0.5 h" in checks["approval_latency_slo"].metadata["summary"].value


def test_every_check_links_to_an_existing_runbook_section() -> None:
    text = (REPO_ROOT / "docs" / "runbook.md").read_text(encoding="utf-8")
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for name, spec in CHECKS.items():
        link = re.search(r"docs/runbook\.md#([\w-]+)", spec.description or "")
        assert link, name
        assert link.group(1) in anchors, f"{name}: no section {link.group(1)} in docs/runbook.md"


def test_the_daily_schedule_materialises_the_day_before() -> None:
    defs = dg.Definitions(
        assets=INSIGHT_ASSETS,
        schedules=[insight_daily_schedule],
        resources={
            "platform_db": PlatformDatabase(url="postgresql://unused"),
            "platform_config": PlatformConfigResource(),
        },
    )
    schedule = defs.get_schedule_def("delivery_insight_daily_schedule")
    assert schedule.cron_schedule == "17 0 * * *"
    with dg.instance_for_test() as instance:
        tick = datetime(2026, 3, 3, 0, 17, tzinfo=UTC)
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick))
    assert [r.partition_key for r in result.run_requests or []] == ["2026-03-02"]
