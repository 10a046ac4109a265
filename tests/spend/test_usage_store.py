"""Usage and reservations in the platform database: exact sums, and exactly one start when room is for one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from codexk8s_pipelines.domain.spend import Amount, Budgets, Cost, CostSource, Limit, Scope, TokenCounts
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.usage import (
    UsageRecord,
    issue_runs,
    monthly_spend,
    record_usage,
    release_reservation,
    reserve,
    run_usage,
    spend_by,
    spent,
)

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _usage(key: str, tokens: tuple[int | None, int | None, int | None], cost: str | None, **kw: object) -> UsageRecord:
    return UsageRecord(
        correlation_key=key,
        repository=str(kw.get("repository", "acme/shop")),
        agent=str(kw.get("agent", "codex")),
        tokens=TokenCounts(*tokens),
        cost=Cost(None if cost is None else Decimal(cost), "USD", CostSource.PRICE_TABLE),
        issue_number=kw.get("issue", 7),  # type: ignore[arg-type]
        model="gpt-5.5",
    )


def test_usage_recorded_exactly_and_unknown_stays_unknown(store: PlatformStore) -> None:
    record_usage(store, _usage("acme/shop#7:run:dev:1", (1200, 200, 80), "0.0128"), at=NOW)
    record_usage(store, _usage("acme/shop#7:run:qa:2", (None, None, None), None), at=NOW)
    row = run_usage(store, "acme/shop#7:run:dev:1")
    assert row is not None
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == (1200, 200, 80)
    assert row["cost"] == Decimal("0.012800") and row["model"] == "gpt-5.5"
    unknown = run_usage(store, "acme/shop#7:run:qa:2")
    assert unknown is not None and unknown["input_tokens"] is None and unknown["cost"] is None
    assert issue_runs(store, "acme/shop", 7) == [Amount(1280, Decimal("0.0128"), 1, 0), Amount(0, Decimal(0), 1, 1, 1)]


def test_spent_per_scope_counts_usage_and_holds(store: PlatformStore) -> None:
    record_usage(store, _usage("k1", (1000, 0, 100), "1.00"), at=NOW - timedelta(hours=1))
    record_usage(store, _usage("k2", (500, 0, 50), "0.50", issue=8), at=NOW - timedelta(days=2))
    record_usage(store, _usage("k3", (10, 0, 1), "0.10", repository="other/repo", issue=1), at=NOW)
    budgets = Budgets(per_run=Limit(cost=Decimal(2)))
    assert reserve(store, budgets, "k4", "acme/shop", 7, "codex", now=NOW) == []
    s = spent(store, "acme/shop", 7, "codex", now=NOW)
    assert s[Scope.ISSUE] == Amount(1100, Decimal("3.00"), 2, 0)  # k1 + the hold of k4
    assert s[Scope.REPOSITORY_DAY] == Amount(1100, Decimal("3.00"), 2, 0)
    assert s[Scope.REPOSITORY_MONTH] == Amount(1650, Decimal("3.50"), 3, 0)
    assert s[Scope.AGENT_DAY] == Amount(1111, Decimal("3.10"), 3, 0)  # every repository's codex runs today
    # The run reports: its hold becomes its real usage.
    record_usage(store, _usage("k4", (100, 0, 10), "0.05"), at=NOW)
    assert spent(store, "acme/shop", 7, "codex", now=NOW)[Scope.ISSUE] == Amount(1210, Decimal("1.05"), 2, 0)
    assert release_reservation(store, "k4") is False


def test_exhausted_issue_budget_refuses_and_holds_nothing(store: PlatformStore) -> None:
    budgets = Budgets(per_issue=Limit(cost=Decimal(1)))
    record_usage(store, _usage("k1", (1000, 0, 100), "1.00"), at=NOW)
    breaches = reserve(store, budgets, "k2", "acme/shop", 7, "codex", now=NOW)
    assert [b.scope for b in breaches] == [Scope.ISSUE]
    assert "issue budget: $1.00 spent" in breaches[0].text("USD")
    # Raising the budget lets it start.
    assert reserve(store, Budgets(per_issue=Limit(cost=Decimal(2))), "k2", "acme/shop", 7, "codex", now=NOW) == []


def test_two_simultaneous_launches_with_room_for_one_start_one(store: PlatformStore) -> None:
    budgets = Budgets(per_run=Limit(cost=Decimal(2)), repository_day=Limit(cost=Decimal(3)))
    record_usage(store, _usage("done", (1, 0, 1), "0.50", issue=1), at=NOW)
    barrier = threading.Barrier(2)
    results: dict[str, list[object]] = {}

    def launch(key: str, issue: int) -> None:
        barrier.wait()
        results[key] = list(reserve(store, budgets, key, "acme/shop", issue, "codex", now=NOW))

    threads = [threading.Thread(target=launch, args=(f"acme/shop#{n}:run:dev:{n}", n)) for n in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    started = [k for k, breaches in results.items() if not breaches]
    assert len(results) == 2 and len(started) == 1
    # The same key asking again (a retried tick) keeps its hold instead of being refused.
    assert reserve(store, budgets, started[0], "acme/shop", 2, "codex", now=NOW) == []


def test_spend_by_and_monthly_spend(store: PlatformStore) -> None:
    record_usage(store, _usage("a", (100, 10, 10), "0.10"), at=NOW)
    record_usage(store, _usage("b", (200, 0, 20), "0.20", agent="claude-code"), at=NOW)
    record_usage(store, _usage("c", (300, 0, 30), "0.30"), at=NOW - timedelta(days=40))
    rows = spend_by(store, NOW - timedelta(days=1), NOW + timedelta(days=1))
    assert [(r.agent, r.runs, r.input_tokens, r.cost) for r in rows] == [
        ("claude-code", 1, 200, Decimal("0.2")),
        ("codex", 1, 100, Decimal("0.1")),
    ]
    assert monthly_spend(store, NOW, ["acme/shop"]) == {"acme/shop": Amount(330, Decimal("0.3"), 2, 0)}
    t0 = time.monotonic()
    spend_by(store, NOW - timedelta(days=1), NOW, repository="ACME/shop")
    assert time.monotonic() - t0 < 5
