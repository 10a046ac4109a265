"""The spend asset and `codexk8s spend`: the day's table, the plot, and a check that fails at 80% of a monthly
budget — through Dagster's own materialize and the real CLI entry point."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines import cli
from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.domain.spend import Cost, CostSource, TokenCounts
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.spend import cli as spend_cli
from codexk8s_pipelines.spend.assets import CHECK, spend, spend_daily_job, spend_hourly_schedule
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.usage import UsageRecord, record_usage

DAY = "2026-12-03"


def _record(store: PlatformStore, key: str, cost: str, at: datetime, repository: str = "acme/shop", **kw: str) -> None:
    record_usage(
        store,
        UsageRecord(
            correlation_key=key,
            repository=repository,
            agent=kw.get("agent", "codex"),
            model=kw.get("model", "gpt-5.5"),
            tokens=TokenCounts(100_000, 20_000, 10_000),
            cost=Cost(Decimal(cost), "USD", CostSource.PRICE_TABLE),
            issue_number=1,
        ),
        at=at,
    )


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: PlatformStore):
    def write(month_cost: int | None) -> None:
        budgets = f"budgets:\n  per_repository:\n    month: {{cost: {month_cost}}}\n" if month_cost else ""
        (tmp_path / "codexk8s.yaml").write_text("repositories:\n  - github: acme/shop\n" + budgets)
        monkeypatch.setenv("CODEXK8S_CONFIG", str(tmp_path / "codexk8s.yaml"))
        monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "state"))
        monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
        load_config_from_environment.cache_clear()

    _record(store, "a", "30", datetime(2026, 12, 1, 9, tzinfo=UTC))
    _record(store, "b", "45", datetime(2026, 12, 3, 10, tzinfo=UTC), agent="claude-code", model="claude-x")
    _record(store, "c", "5", datetime(2026, 12, 3, 11, tzinfo=UTC))
    _record(store, "d", "7", datetime(2026, 12, 4, 11, tzinfo=UTC))  # after the partition: not in its month-to-date
    return write


def _materialize(store: PlatformStore) -> dg.ExecuteInProcessResult:
    resources = {"platform_db": PlatformDatabase(url=store.url), "platform_config": PlatformConfigResource()}
    result = dg.materialize([spend], partition_key=DAY, resources=resources, raise_on_error=False)
    assert result.success
    return result


def test_the_days_table_plot_and_a_check_over_80_percent(configured, store: PlatformStore) -> None:
    configured(100)  # month to date on Dec 3: 30 + 45 + 5 = 80 → 80% used
    result = _materialize(store)
    meta = result.asset_materializations_for_node("spend")[0].metadata
    assert meta["runs"].value == 2 and meta["cost"].value == pytest.approx(50.0)
    rows = [r.data for r in meta["spend"].value.records]
    assert [(r["agent"], r["model"], r["cost"]) for r in rows] == [
        ("claude-code", "claude-x", 45.0),
        ("codex", "gpt-5.5", 5.0),
    ]
    assert Path(meta["cost_plot"].value).read_bytes().startswith(b"\x89PNG")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == CHECK and not check.passed
    assert check.severity is dg.AssetCheckSeverity.WARN
    assert "acme/shop: $80.00 of $100.00 this month (80%)" in check.metadata["summary"].value


def test_check_passes_under_80_percent_and_errors_over_the_cap(configured, store: PlatformStore) -> None:
    configured(101)
    (check,) = _materialize(store).get_asset_check_evaluations()
    assert check.passed
    configured(79)
    (check,) = _materialize(store).get_asset_check_evaluations()
    assert not check.passed and check.severity is dg.AssetCheckSeverity.ERROR


def test_cli_prints_the_same_figures(
    configured, store: PlatformStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report ends today and counts this month's budget: a fixed day, so the figures hold on any date.
    monkeypatch.setattr(spend_cli, "_now", lambda: datetime(2026, 12, 6, 15, tzinfo=UTC))
    configured(100)
    assert cli.main(["spend", "--since", "2026-12-01", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 4 and Decimal(report["cost"]) == Decimal(87)
    assert cli.main(["spend", "--since", "2026-12-01", "--repo", "acme/shop"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spend 2026-12-01 → 2026-12-06 (UTC, days included)")
    assert "total: 4 runs · 440,000 tokens · $87.00" in out


def test_cli_rejects_a_bad_date(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["spend", "--since", "yesterday"])
    assert exc.value.code == 2
    assert "'yesterday' is not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_hourly_schedule_asks_for_todays_partition() -> None:
    resources = {
        "platform_db": PlatformDatabase(url="postgresql://unused"),
        "platform_config": PlatformConfigResource(),
    }
    defs = dg.Definitions(
        assets=[spend], jobs=[spend_daily_job], schedules=[spend_hourly_schedule], resources=resources
    )
    ctx = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 12, 5, 13, 29, tzinfo=UTC), repository_def=defs.get_repository_def()
    )
    request = spend_hourly_schedule.evaluate_tick(ctx).run_requests[0]
    assert request.partition_key == "2026-12-05"


def test_a_run_without_a_price_is_said_not_shown_as_free(
    configured, store: PlatformStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model the price table lacks (Codex reports no cost of its own) summed as $0.0000: the spend table, the
    CLI and the monthly budget (0% used) all read as if the run had been free."""
    unpriced = UsageRecord(
        correlation_key="e", repository="acme/shop", agent="codex", model="gpt-5.6-sol",
        tokens=TokenCounts(3_000_000, 1_000_000, 200_000), cost=Cost(None, "USD", CostSource.UNKNOWN), issue_number=1,
    )  # fmt: skip
    record_usage(store, unpriced, at=datetime(2026, 12, 3, 12, tzinfo=UTC))
    configured(1000)
    result = _materialize(store)
    meta = result.asset_materializations_for_node("spend")[0].metadata
    assert meta["runs_without_price"].value == 1
    rows = {r.data["model"]: r.data for r in meta["spend"].value.records}
    assert rows["gpt-5.6-sol"]["runs_without_price"] == 1
    (check,) = result.get_asset_check_evaluations()
    assert "1 run(s) this month have no price" in check.metadata["summary"].value

    monkeypatch.setattr(spend_cli, "_now", lambda: datetime(2026, 12, 6, 15, tzinfo=UTC))
    assert cli.main(["spend", "--since", "2026-12-03"]) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "gpt-5.6-sol" in x]
    assert line.endswith("cost unknown") and "$0" not in line
    # b, c, d (110,000 input and output tokens each) and e (3,200,000), Dec 3 to 6; the month so far adds a.
    assert "total: 4 runs · 3,530,000 tokens · $57.00 + 1 run(s) without a price" in out
    assert "acme/shop: $87.00 + 1 run(s) without a price of $1000.00 this month (9%)" in out
