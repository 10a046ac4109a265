"""Reads made at every intake tick or MCP call are served by an index that leads with what they filter on.

PostgreSQL before 18 has no skip scan: an index is read as a range only on a condition on its first column(s), and
otherwise read whole or not at all. At a year's size, the webhook inbox's healthy repositories read the whole
(repository, received_at) index each tick (12.4 ms at 200,000 deliveries on PostgreSQL 15), the MCP run history's
lower(repository) used no index of runs (3 to 10 ms at 100,000 runs), and the rescue of released budget holds read
every hold ever held. Each test captures the statement the store runs (it must be the module's constant) and
EXPLAINs it with the same values on tables filled enough that the planner picks an index by its costs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RUNS_OF_ITEM_SQL
from codexk8s_pipelines.store.intake import HEALTHY_SQL, read_inbox
from codexk8s_pipelines.store.usage import RELEASED_NOT_STARTED_SQL, RESCUE_WINDOW, released_not_started

Statement = tuple[str, Any]


class _Recording:
    """A store connection that records each statement and its values."""

    def __init__(self, conn: psycopg.Connection[Any], seen: list[Statement]) -> None:
        self._conn, self._seen = conn, seen

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        self._seen.append((str(query), params))
        return self._conn.execute(query, params, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _run_by_store(store: PlatformStore, monkeypatch: pytest.MonkeyPatch, call: Callable[[], object]) -> list[Statement]:
    """The statements `call` runs through `store`, with their values."""
    seen: list[Statement] = []
    real = store.connect

    @contextmanager
    def recording() -> Iterator[Any]:
        with real() as conn:
            yield _Recording(conn, seen)

    with monkeypatch.context() as patch:
        patch.setattr(store, "connect", recording)
        call()
    return seen


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _plan_nodes(child)


def _reads_of(url: str, statement: Statement, table: str) -> list[str]:
    """How the plan of `statement` reads `table`: "seq scan", or the first column of each index it reads."""
    query, params = statement
    with psycopg.connect(url) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()  # type: ignore[arg-type]
        assert row is not None
        nodes = list(_plan_nodes(row[0][0]["Plan"]))
        reads = ["seq scan" for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == table]
        for index in (n["Index Name"] for n in nodes if "Index Name" in n):
            found = conn.execute(
                "SELECT indrelid::regclass::text, pg_get_indexdef(indexrelid, 1, true) FROM pg_index"
                " WHERE indexrelid = %s::regclass",
                (index,),
            ).fetchone()
            assert found is not None
            if found[0] == table:
                reads.append(found[1])
    return reads


def _fill(migrator_url: str, *statements: str) -> None:
    with psycopg.connect(migrator_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]
        conn.execute("ANALYZE")


def test_the_inbox_reads_the_repositories_that_delivered_lately_by_their_time(
    store: PlatformStore, database_url: str, migrator_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ten weeks of deliveries of 50 repositories, one every 5 minutes, newest first by number.
    _fill(
        migrator_database_url,
        "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake, status,"
        " received_at) SELECT 'd-' || i, 'issues', 'labeled', 'org/repo' || (i % 50), i % 3000, 'issue_labels',"
        " CASE WHEN i % 4 = 0 THEN 'ignored' ELSE 'drained' END, now() - i * interval '5 minutes'"
        " FROM generate_series(1, 20000) i",
    )
    since = datetime.now(UTC) - timedelta(minutes=57)  # the 11 newest deliveries
    seen = _run_by_store(store, monkeypatch, lambda: read_inbox(store, "issue_labels", since))
    healthy = [s for s in seen if s[0] == HEALTHY_SQL]
    assert len(healthy) == 1, [s[0] for s in seen]
    assert read_inbox(store, "issue_labels", since).healthy == {f"org/repo{i}" for i in range(1, 12)}
    assert _reads_of(database_url, healthy[0], "webhook_deliveries") == ["received_at"]


@pytest.mark.parametrize("item", ["issue", "pr"])
def test_the_mcp_run_history_reads_an_items_runs_by_their_lower_cased_repository(
    store: PlatformStore,
    database_url: str,
    migrator_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    item: str,
) -> None:
    # 20,000 runs of 50 repositories; one launched by hand from the Dagster UI, its repository as its config spelled it
    _fill(
        migrator_database_url,
        "INSERT INTO runs (correlation_key, repository, issue_number, pr_number, stage, role, status, created_at)"
        " SELECT 'org/repo' || (i % 50) || '#' || (i % 3000) || ':run:dev:' || i, 'org/repo' || (i % 50), i % 3000,"
        " CASE WHEN i % 5 = 0 THEN 5000 + i % 3000 END, 'dev', 'dev', 'succeeded', now() - i * interval '5 minutes'"
        " FROM generate_series(1, 20000) i",
        "INSERT INTO runs (correlation_key, repository, issue_number, pr_number, stage, role, status)"
        " VALUES ('Acme/Shop#7:manual', 'Acme/Shop', 7, 9007, 'dev', 'dev', 'running')",
    )
    issue, pr = (7, None) if item == "issue" else (None, 9007)
    seen = _run_by_store(store, monkeypatch, lambda: store.runs_of_item("acme/shop", issue, pr, 20))
    assert [s[0] for s in seen] == [RUNS_OF_ITEM_SQL]
    assert [r["correlation_key"] for r in store.runs_of_item("acme/shop", issue, pr, 20)] == ["Acme/Shop#7:manual"]
    assert _reads_of(database_url, seen[0], "runs") == ["lower(repository)"]


@pytest.mark.parametrize("scope", ["released by the budgets", "an issue's"])
def test_the_rescue_of_released_holds_reads_them_by_their_release_time(
    store: PlatformStore,
    database_url: str,
    migrator_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    scope: str,
) -> None:
    # A year of holds, each released three hours after it was held; one released lately whose run was never recorded
    _fill(
        migrator_database_url,
        "INSERT INTO budget_holds (correlation_key, repository, issue_number, agent, actor, decision, held_at,"
        " released_at, released_how, released_by) SELECT 'org/repo' || (i % 50) || '#' || (i % 3000) || ':run:dev:h'"
        " || i, 'org/repo' || (i % 50), i % 3000, 'codex', 'alice', '{}', now() - i * interval '1 hour',"
        " now() - i * interval '1 hour' + interval '3 hours', 'budget', 'x' FROM generate_series(10, 8760) i",
        "INSERT INTO budget_holds (correlation_key, repository, issue_number, agent, actor, decision, held_at,"
        " released_at, released_how, released_by) VALUES ('acme/shop#7:run:dev:late', 'acme/shop', 7, 'codex',"
        " 'alice', '{}', now() - interval '2 hours', now() - interval '10 minutes', 'budget', 'x')",
    )
    since = datetime.now(UTC) - RESCUE_WINDOW
    kwargs: dict[str, Any] = {"how": "budget"} if scope == "released by the budgets" else {"repository": "acme/shop"}
    if scope == "an issue's":
        kwargs["issue_number"] = 7
    seen = _run_by_store(store, monkeypatch, lambda: released_not_started(store, since, **kwargs))
    assert [s[0] for s in seen] == [RELEASED_NOT_STARTED_SQL]
    assert [h.correlation_key for h in released_not_started(store, since, **kwargs)] == ["acme/shop#7:run:dev:late"]
    assert _reads_of(database_url, seen[0], "budget_holds") == ["released_at"]
