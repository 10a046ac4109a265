"""`codexk8s trace` and the service comment's History show UTC, whatever time zone the database session has (the
embedded PostgreSQL takes the machine's at initdb): the platform store's connections use UTC, and the renderers
convert what they are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import sql

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.domain.issue_trace import IssueTrace, TraceStep, render_history_markdown, render_trace
from codexk8s_pipelines.insight.trace import issue_trace
from codexk8s_pipelines.store import PlatformStore

REPO = "acme/shop"
DEV = {"kind": "run", "stage": "dev", "revise": False, "add_labels": []}


def test_a_database_in_another_time_zone_still_traces_in_utc(
    migrator_database_url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CODEXK8S_DAGSTER_URL", raising=False)
    with psycopg.connect(migrator_database_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
        assert row is not None
        conn.execute(sql.SQL("ALTER DATABASE {} SET timezone = 'Europe/Berlin'").format(sql.Identifier(row[0])))
    with psycopg.connect(database_url) as conn:  # a session of its own: Berlin
        assert conn.execute("SHOW timezone").fetchone() == ("Europe/Berlin",)
    store = PlatformStore(database_url)
    with store.connect() as conn:
        assert conn.execute("SHOW timezone").fetchone() == {"TimeZone": "UTC"}
        conn.execute("SELECT 1")  # the caller's own transaction still works as before
    key = correlation_key(REPO, 9, "run:dev", 1)
    store.append_event(key, "run.requested", "human", "alice", DEV, at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    store.append_event(key, "run.started", "system", "dagster", {"dagster_run_id": "a"},
                       at=datetime(2026, 3, 2, 9, 1, tzinfo=UTC))  # fmt: skip

    trace = issue_trace(store, REPO, 9)
    assert render_trace(trace).splitlines()[1:3] == [
        "  2026-03-02T09:00:00Z  alice    `run:dev`: run requested → dev",
        "  2026-03-02T09:01:00Z  dagster  run started: http://127.0.0.1:3000/runs/a",
    ]
    assert "- `2026-03-02 09:00` alice: `run:dev`: run requested → dev" in render_history_markdown(trace)
    assert trace.to_dict()["steps"][0]["at"] == "2026-03-02T09:00:00+00:00"


def test_the_renderers_show_utc_whatever_zone_a_time_is_in() -> None:
    berlin = timezone(timedelta(hours=1))
    step = TraceStep(datetime(2026, 3, 2, 10, 0, tzinfo=berlin), "alice", "human", "run:dev", "run.requested",
                     "`run:dev`: run requested → dev", "acme/shop#9:run:dev:1")  # fmt: skip
    trace = IssueTrace(REPO, 9, [step], [], 0)
    assert render_trace(trace).splitlines()[1] == "  2026-03-02T09:00:00Z  alice  `run:dev`: run requested → dev"
    assert "- `2026-03-02 09:00` alice: `run:dev`: run requested → dev" in render_history_markdown(trace)
    assert trace.to_dict()["steps"][0]["at"] == "2026-03-02T09:00:00+00:00"
