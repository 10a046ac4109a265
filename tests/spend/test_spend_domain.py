"""Prices, budgets and loop detection: the arithmetic every enforcement point shares."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from codexk8s_pipelines.config.spend import BudgetsConfig, PricingConfig
from codexk8s_pipelines.domain.spend import (
    Amount,
    Budgets,
    CostSource,
    Limit,
    LoopDetector,
    Scope,
    TokenCounts,
    Turn,
    issue_total_line,
    launch_breaches,
    run_cap_reached,
    used_share,
)

PRICING = PricingConfig.model_validate(
    {"currency": "USD", "models": {"gpt-5.5": {"input": 1.25, "cached_input": 0.125, "output": 10}}}
).table()


def test_cost_from_the_price_table_splits_cached_input() -> None:
    # 1,000,000 input of which 400,000 cached, 100,000 output:
    # 600,000 × 1.25 + 400,000 × 0.125 + 100,000 × 10, per million = 0.75 + 0.05 + 1.00
    cost = PRICING.cost("gpt-5.5", TokenCounts(1_000_000, 400_000, 100_000))
    assert cost.amount == Decimal("1.800000")
    assert cost.source is CostSource.PRICE_TABLE
    assert cost.text() == "$1.80"


def test_unpriced_model_uses_the_agents_own_usd_figure_else_is_unknown() -> None:
    assert PRICING.cost("claude-x", TokenCounts(10, 0, 5), agent_cost_usd=0.0123).amount == Decimal("0.012300")
    unknown = PRICING.cost("claude-x", TokenCounts(10, 0, 5))
    assert unknown.amount is None and unknown.source is CostSource.UNKNOWN
    assert unknown.text() == "cost unknown"
    eur = PricingConfig.model_validate({"currency": "eur"}).table()
    # An agent's USD figure is not a EUR figure.
    assert eur.cost("x", TokenCounts(1, 0, 1), agent_cost_usd=1.0).amount is None


def test_unknown_usage_is_never_zero() -> None:
    assert TokenCounts().total is None
    assert PRICING.cost("gpt-5.5", TokenCounts()).amount is None
    line = issue_total_line([Amount.of(None, None), Amount.of(1000, Decimal("0.5"))], "USD")
    assert line == "2 runs · 1k tokens · $0.5000 · 1 with usage unknown"


def test_a_run_without_a_price_is_not_shown_as_free() -> None:
    assert issue_total_line([Amount.of(2402, None)], "USD") == "1 run · 2k tokens · cost unknown"
    line = issue_total_line([Amount.of(2402, None), Amount.of(1000, Decimal("0.25"))], "USD")
    assert line == "2 runs · 3k tokens · $0.2500 + 1 run(s) without a price"


def test_issue_total_line_adds_up() -> None:
    runs = [
        Amount.of(200_000, Decimal("0.84")),
        Amount.of(112_000, Decimal("0.50")),
        Amount.of(100_000, Decimal("0.5")),
    ]
    assert issue_total_line(runs, "USD") == "3 runs · 412k tokens · $1.84"


def test_launch_refused_when_spent_plus_hold_passes_a_cap() -> None:
    budgets = Budgets(per_run=Limit(cost=Decimal(2)), per_issue=Limit(cost=Decimal(5)))
    ok = launch_breaches(budgets, {Scope.ISSUE: Amount(cost=Decimal(3), runs=2)})
    assert ok == []
    refused = launch_breaches(budgets, {Scope.ISSUE: Amount(cost=Decimal("3.01"), runs=2)})
    assert [b.scope for b in refused] == [Scope.ISSUE]
    assert refused[0].text("USD") == "issue budget: $3.01 spent + $2.00 for this run > $5.00"


def test_without_a_hold_a_reached_cap_refuses() -> None:
    budgets = Budgets(repository_day=Limit(tokens=1000))
    assert launch_breaches(budgets, {Scope.REPOSITORY_DAY: Amount(tokens=999)}) == []
    assert launch_breaches(budgets, {Scope.REPOSITORY_DAY: Amount(tokens=1000)})[0].scope is Scope.REPOSITORY_DAY


def test_run_cap_and_used_share() -> None:
    budgets = Budgets(per_run=Limit(tokens=50_000, cost=Decimal(1)))
    assert run_cap_reached(budgets, 49_999, Decimal("0.99")) is None
    assert run_cap_reached(budgets, 50_001, None) is not None
    assert run_cap_reached(budgets, None, Decimal("1.01")) is not None
    assert run_cap_reached(Budgets(), 10**9, None) is None
    assert used_share(Limit(cost=Decimal(100)), Amount(cost=Decimal(80))) == pytest.approx(0.8)
    assert used_share(Limit(), Amount(cost=Decimal(80))) is None


def test_loop_detector_repeated_call_and_idle_turns() -> None:
    same = Turn(("exec_command:pytest -q",), changed=False)
    d = LoopDetector(limit=3)
    assert d.feed(same) is None and d.feed(same) is None
    assert d.feed(same) == "the same tool call 'exec_command:pytest -q' 3 turns in a row"
    idle = LoopDetector(limit=3)  # no change: twice the limit, since reading before the first edit is normal
    reads = [Turn((f"read {i}",), False) for i in range(5)]
    assert idle.feed_all([*reads, Turn(("edit",), True), *reads]) is None
    assert idle.feed(Turn(("read 9",), False)) == "no change to the workspace for 6 turns"
    assert LoopDetector(limit=0).feed_all([same] * 50) is None


def test_budget_config_errors_name_the_key() -> None:
    with pytest.raises(ValidationError, match="per_run"):
        BudgetsConfig.model_validate({"per_run": {}})
    with pytest.raises(ValidationError, match="currency code"):
        PricingConfig.model_validate({"currency": "dollars"})
    with pytest.raises(ValidationError, match=r"per_agent\.month"):
        BudgetsConfig.model_validate({"per_agent": {"month": {"cost": 1}}})
    b = BudgetsConfig.model_validate({"per_run": {"tokens": 100}, "per_repository": {"month": {"cost": 50}}}).budgets()
    assert b.reservation() == Amount(tokens=100, runs=1)
    assert b.repository_month == Limit(cost=Decimal(50))
