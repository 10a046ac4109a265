"""A run re-executed from the Dagster UI (a new Dagster run, the same correlation key) adds its attempt's usage to the
first's: the first attempt's money stays in the budgets, the spend report, the issue's total, insight and the MCP
run history. The same Dagster run reporting twice still replaces its own row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.spend import (
    Amount,
    Budgets,
    Cost,
    CostSource,
    Limit,
    Scope,
    TokenCounts,
    issue_total_line,
)
from codexk8s_pipelines.mcp.tools import _usage
from codexk8s_pipelines.spend.report import build_report
from codexk8s_pipelines.store import DatabaseUrls, PlatformStore
from codexk8s_pipelines.store.insight import run_infos
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
    usage_for_runs,
)
from tests.helpers import undo_migration_21

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
REPO = "acme/shop"
KEY = correlation_key(REPO, 7, "run:dev", 1)


def _attempt(
    dagster_run_id: str, tokens: tuple[int | None, int | None, int | None], cost: str | None, key: str = KEY
) -> UsageRecord:
    return UsageRecord(
        correlation_key=key,
        repository=REPO,
        agent="codex",
        tokens=TokenCounts(*tokens),
        cost=Cost(None if cost is None else Decimal(cost), "USD", CostSource.PRICE_TABLE),
        issue_number=7,
        stage="dev",
        model="gpt-5.5",
        dagster_run_id=dagster_run_id,
    )


def test_a_re_executed_run_counts_both_attempts_everywhere(store: PlatformStore) -> None:
    record_usage(store, _attempt("run-1", (100_000, 0, 20_000), "1.25"), at=NOW)
    record_usage(store, _attempt("run-2", (40_000, 0, 8_000), "0.50"), at=NOW)
    # The budgets: this month's, the issue's, today's.
    both = Amount(168_000, Decimal("1.75"), 2, 0)
    assert monthly_spend(store, NOW, [REPO]) == {REPO: both}
    scopes = spent(store, REPO, 7, "codex", now=NOW)
    assert scopes[Scope.REPOSITORY_MONTH] == both and scopes[Scope.ISSUE] == both
    assert scopes[Scope.AGENT_DAY] == both
    # The service comment's running total.
    assert issue_total_line(issue_runs(store, REPO, 7), "USD") == "2 runs · 168k tokens · $1.75"
    # The spend report: `runs` counts attempts.
    (row,) = spend_by(store, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 6, tzinfo=UTC))
    assert (row.runs, row.input_tokens, row.output_tokens, row.cost) == (2, 140_000, 28_000, Decimal("1.75"))
    report = build_report(
        store,
        "USD",
        Limit(cost=Decimal(100)),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 6, tzinfo=UTC),
        REPO,
    )
    assert "total: 2 runs · 168,000 tokens · $1.75" in report.table()
    assert "budget acme/shop: $1.75 of $100.00 this month" in report.table()
    # The run itself (MCP run history, the real-agent tests): its attempts summed.
    usage = run_usage(store, KEY)
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["cost"]) == (140_000, 28_000, Decimal("1.75"))
    assert usage["attempts"] == 2 and usage["dagster_run_ids"] == ["run-1", "run-2"]
    assert usage_for_runs(store, [KEY, "acme/shop#9:run:dev:3"]) == {KEY: usage}
    assert _usage(usage) == {
        "agent": "codex", "model": "gpt-5.5", "input": 140_000, "cached_input": 0, "output": 28_000,
        "cost": "1.750000", "currency": "USD", "attempts": 2, "attempts_usage_unknown": 0,
        "attempts_without_price": 0,
    }  # fmt: skip
    # Delivery insight: one run, both attempts (the join used to give one row per attempt, the last one winning).
    info = run_infos(store, [KEY])[KEY]
    assert (info.tokens, info.cost, info.currency) == (168_000, 1.75, "USD")


def test_the_same_dagster_run_reporting_twice_replaces_its_own_row(store: PlatformStore) -> None:
    record_usage(store, _attempt("run-1", (1_000, 0, 100), "0.10"), at=NOW)
    record_usage(store, _attempt("run-1", (3_000, 0, 300), "0.30"), at=NOW)  # an op retried inside the run
    assert monthly_spend(store, NOW, [REPO]) == {REPO: Amount(3_300, Decimal("0.30"), 1, 0)}
    assert issue_total_line(issue_runs(store, REPO, 7), "USD") == "1 run · 3k tokens · $0.3000"
    usage = run_usage(store, KEY)
    assert usage is not None and usage["attempts"] == 1
    assert (usage["input_tokens"], usage["output_tokens"], usage["cost"]) == (3_000, 300, Decimal("0.30"))
    assert _usage(usage) == {
        "agent": "codex", "model": "gpt-5.5", "input": 3_000, "cached_input": 0, "output": 300, "cost": "0.300000",
        "currency": "USD",
    }  # fmt: skip
    assert run_infos(store, [KEY])[KEY].tokens == 3_300


def test_attempts_that_reported_nothing_stay_unknown_and_unpriced_ones_are_said(store: PlatformStore) -> None:
    unknown = correlation_key(REPO, 7, "run:qa", 2)
    record_usage(store, _attempt("q-1", (None, None, None), None, key=unknown), at=NOW)
    record_usage(store, _attempt("q-2", (None, None, None), None, key=unknown), at=NOW)
    usage = run_usage(store, unknown)
    assert usage is not None and usage["input_tokens"] is None and usage["cost"] is None  # never 0
    unknown_figures = _usage(usage)
    assert unknown_figures is not None and unknown_figures["cost"] is None and unknown_figures["input"] is None
    info = run_infos(store, [unknown])[unknown]
    assert info.tokens is None and info.cost is None
    assert (
        issue_total_line(issue_runs(store, REPO, 7), "USD") == "2 runs · 0 tokens · cost unknown · 2 with usage unknown"
    )

    # One attempt priced, one without a price (its model had none): the money of the one, the other said.
    record_usage(store, _attempt("d-1", (10_000, 0, 1_000), None), at=NOW)
    record_usage(store, _attempt("d-2", (20_000, 0, 2_000), "0.40"), at=NOW)
    mixed = run_usage(store, KEY)
    assert mixed is not None and mixed["cost"] == Decimal("0.40") and mixed["input_tokens"] == 30_000
    figures = _usage(mixed)
    assert figures is not None
    assert (figures["cost"], figures["attempts"], figures["attempts_without_price"]) == ("0.400000", 2, 1)
    assert issue_total_line(issue_runs(store, REPO, 7), "USD") == (
        "4 runs · 33k tokens · $0.4000 + 1 run(s) without a price · 2 with usage unknown"
    )


def test_a_second_attempt_records_without_a_hold_and_releases_nothing_twice(store: PlatformStore) -> None:
    budgets = Budgets(per_run=Limit(cost=Decimal(2)), per_issue=Limit(cost=Decimal(10)))
    assert reserve(store, budgets, KEY, REPO, 7, "codex", now=NOW) == []  # the sensor's launch
    record_usage(store, _attempt("run-1", (1_000, 0, 100), "1.00"), at=NOW)  # releases the hold
    assert release_reservation(store, KEY) is False
    # The re-execution from the UI reserved nothing: its report records all the same and releases nothing.
    record_usage(store, _attempt("run-2", (1_000, 0, 100), "1.50"), at=NOW)
    assert spent(store, REPO, 7, "codex", now=NOW)[Scope.ISSUE] == Amount(2_200, Decimal("2.50"), 2, 0)
    with store.connect() as conn:
        holds = conn.execute("SELECT count(*) AS n FROM budget_reservations WHERE released_at IS NULL").fetchone()
    assert holds is not None and holds["n"] == 0


def test_usage_recorded_before_the_upgrade_is_kept_as_its_runs_one_attempt(bare_database: DatabaseUrls) -> None:
    """An upgrade: a database whose usage was one row per key gets `dagster_run_id` '' for its rows."""
    store = PlatformStore(bare_database.migrator)
    store.migrate()
    with psycopg.connect(bare_database.migrator) as conn:
        conn.execute("ALTER TABLE run_usage DROP CONSTRAINT run_usage_correlation_key_attempt_key")
        conn.execute("ALTER TABLE run_usage DROP COLUMN dagster_run_id")
        conn.execute("ALTER TABLE run_usage ADD CONSTRAINT run_usage_correlation_key_key UNIQUE (correlation_key)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 20")
        undo_migration_21(conn)  # which follows: the latest version applied is what `migrate` starts from
        conn.execute(
            "INSERT INTO run_usage (correlation_key, repository, issue_number, stage, agent, model, input_tokens,"
            " cached_input_tokens, output_tokens, cost, currency, cost_source, recorded_at)"
            " VALUES (%s, 'acme/shop', 7, 'dev', 'codex', 'gpt-5.5', 1000, 0, 100, 1.25, 'USD', 'price table', %s)",
            (KEY, NOW),
        )
    assert store.migrate() == [20, 21]
    with psycopg.connect(bare_database.migrator) as conn:
        rows = conn.execute("SELECT correlation_key, dagster_run_id, cost FROM run_usage").fetchall()
    assert rows == [(KEY, "", Decimal("1.250000"))]
    # The run re-executed after the upgrade: its new attempt is added to the one recorded before.
    record_usage(store, _attempt("after-upgrade", (2_000, 0, 200), "0.75"), at=NOW)
    usage = run_usage(store, KEY)
    assert usage is not None and usage["attempts"] == 2 and usage["cost"] == Decimal("2.00")
    assert monthly_spend(store, NOW, [REPO]) == {REPO: Amount(3_300, Decimal("2.00"), 2, 0)}
