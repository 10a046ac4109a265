"""The agent sees what its run and issue cost and what the budgets have left, through the official MCP client."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.spend import Cost, CostSource, TokenCounts
from codexk8s_pipelines.store.database import RunRecord
from codexk8s_pipelines.store.usage import UsageRecord, record_usage

from .conftest import REPO, Platform, data_of


def _budgets(text: str) -> None:
    path = Path(os.environ["CODEXK8S_CONFIG"])
    path.write_text(path.read_text() + text)
    load_config_from_environment.cache_clear()


def _spent(platform: Platform, cost: str) -> str:
    key = correlation_key(REPO, platform.issue, "run:plan", 700)
    platform.store.register_run(RunRecord(key, REPO, role="em", stage="plan", issue_number=platform.issue))
    record_usage(
        platform.store,
        UsageRecord(key, REPO, "codex", TokenCounts(12_000, 2_000, 800), Cost(Decimal(cost), "USD",
                    CostSource.PRICE_TABLE), issue_number=platform.issue, model="gpt-5.5"),
    )  # fmt: skip
    return key


def test_budget_status_says_what_is_left_per_scope(platform: Platform) -> None:
    _budgets("budgets:\n  per_run: {tokens: 50000}\n  per_issue: {cost: 5}\n  per_repository: {month: {cost: 100}}\n")
    _spent(platform, "1.25")
    data = data_of(platform.call("budget_status", {"token": platform.token}))
    by_scope = {(e["scope"], e["unit"]): e for e in data["limits"]}
    assert by_scope[("run", "tokens")] == {"scope": "run", "unit": "tokens", "cap": "50000"}
    assert by_scope[("issue", "USD")]["used"] == "1.250000" and by_scope[("issue", "USD")]["left"] == "3.750000"
    assert by_scope[("repository/month", "USD")]["left"] == "98.750000"
    assert ("agent/day", "USD") not in by_scope  # not configured: not shown
    assert "budget_status" in [e["payload"].get("tool") for e in platform.events() if e["payload"]]


def test_without_budgets_it_says_so(platform: Platform) -> None:
    data = data_of(platform.call("budget_status", {"token": platform.token}))
    assert data["limits"] == [] and data["note"] == "no budget is configured"


def test_run_lookup_shows_each_runs_usage_and_cost(platform: Platform) -> None:
    key = _spent(platform, "0.0234")
    data = data_of(platform.call("run_lookup", {"token": platform.token}))
    plan = next(r for r in data["runs"] if r["run"] == key)
    assert plan["usage"] == {"agent": "codex", "model": "gpt-5.5", "input": 12_000, "cached_input": 2_000,
                             "output": 800, "cost": "0.023400", "currency": "USD"}  # fmt: skip
    current = next(r for r in data["runs"] if r["current"])
    assert current["usage"] is None  # still running: nothing recorded yet, not zero
