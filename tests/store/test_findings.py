"""Findings history: new, still open, resolved with a date (never deleted), reopened; one sync at a time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import StoreError
from codexk8s_pipelines.store.findings import (
    FindingInput,
    dashboard_findings,
    open_findings,
    platform_issue,
    platform_issue_by_number,
    remember_platform_issue,
    sync_findings,
)

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
REPO = "acme/shop"


def _f(fp: str, title: str | None = None, **details: object) -> FindingInput:
    return FindingInput(fp, title or f"finding {fp}", "HIGH", details)


def test_a_finding_moves_from_new_to_open_to_resolved_to_reopened(store: PlatformStore) -> None:
    first = sync_findings(store, REPO, "security", [_f("a"), _f("b")], T0)
    assert [r["fingerprint"] for r in first.new] == ["a", "b"]

    second = sync_findings(store, REPO, "security", [_f("a", "finding a, line moved")], T0 + timedelta(days=1))
    assert [r["fingerprint"] for r in second.still_open] == ["a"]
    assert [r["fingerprint"] for r in second.resolved] == ["b"]
    assert second.resolved[0]["resolved_at"] == T0 + timedelta(days=1)
    rows = {r["fingerprint"]: r for r in open_findings(store, REPO, "security")}
    assert set(rows) == {"a"}
    assert rows["a"]["title"] == "finding a, line moved"
    assert rows["a"]["first_seen"] == T0 and rows["a"]["last_seen"] == T0 + timedelta(days=1)

    third = sync_findings(store, REPO, "security", [_f("a"), _f("b")], T0 + timedelta(days=2))
    assert [r["fingerprint"] for r in third.reopened] == ["b"]
    assert third.reopened[0]["resolved_at"] is None and third.reopened[0]["reopened"] == 1
    assert third.reopened[0]["first_seen"] == T0  # the history is kept: it is the same finding


def test_resolved_findings_are_kept_and_shown_within_the_window(store: PlatformStore) -> None:
    sync_findings(store, REPO, "drift", [_f("x"), _f("y")], T0)
    sync_findings(store, REPO, "drift", [_f("x")], T0 + timedelta(days=1))
    open_rows, resolved = dashboard_findings(store, REPO, "drift", T0 + timedelta(days=2), timedelta(days=30))
    assert [r["fingerprint"] for r in open_rows] == ["x"]
    assert [r["fingerprint"] for r in resolved] == ["y"]
    _, later = dashboard_findings(store, REPO, "drift", T0 + timedelta(days=40), timedelta(days=30))
    assert later == []
    with store.connect() as conn:  # out of the dashboard, still in the table
        assert conn.execute("SELECT count(*) AS n FROM findings").fetchone()["n"] == 2


def test_preserve_keeps_findings_the_check_could_not_look_at(store: PlatformStore) -> None:
    sync_findings(store, REPO, "security", [_f("a", file="poetry.lock"), _f("b", file="go.sum")], T0)
    result = sync_findings(
        store, REPO, "security", [], T0 + timedelta(days=1), preserve=lambda d: d.get("file") == "poetry.lock"
    )
    assert [r["fingerprint"] for r in result.preserved] == ["a"]
    assert [r["fingerprint"] for r in result.resolved] == ["b"]
    assert [r["fingerprint"] for r in open_findings(store, REPO, "security")] == ["a"]


def test_kinds_and_repositories_are_separate(store: PlatformStore) -> None:
    sync_findings(store, REPO, "security", [_f("a")], T0)
    sync_findings(store, "acme/other", "security", [_f("a")], T0)
    sync_findings(store, REPO, "freshness", [_f("a")], T0)
    result = sync_findings(store, REPO, "security", [], T0 + timedelta(hours=1))
    assert len(result.resolved) == 1
    assert len(open_findings(store, "acme/other", "security")) == 1
    assert len(open_findings(store, REPO, "freshness")) == 1


def test_bad_input_is_refused_with_a_reason(store: PlatformStore) -> None:
    with pytest.raises(StoreError, match="unknown finding kind 'vulns'"):
        sync_findings(store, REPO, "vulns", [_f("a")], T0)
    with pytest.raises(StoreError, match="has no fingerprint"):
        sync_findings(store, REPO, "security", [FindingInput("", "no id")], T0)


def test_secrets_in_details_are_redacted(store: PlatformStore) -> None:
    token = "ghp_" + "A" * 36
    sync_findings(store, REPO, "drift", [_f("a", live=f"TOKEN={token}")], T0)
    (row,) = open_findings(store, REPO, "drift")
    assert token not in str(row["details"])


def test_concurrent_syncs_of_one_repository_do_not_interleave(store: PlatformStore) -> None:
    """Two overlapping runs: each sees the other's result as a whole, never half of it."""
    errors: list[BaseException] = []

    def run(fps: list[str], at: datetime) -> None:
        try:
            sync_findings(store, REPO, "security", [_f(fp) for fp in fps], at)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=([f"f{i}" for i in range(k, k + 50)], T0)) for k in (0, 25)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fps = {r["fingerprint"] for r in open_findings(store, REPO, "security")}
    assert fps in ({f"f{i}" for i in range(0, 50)}, {f"f{i}" for i in range(25, 75)})
    with store.connect() as conn:
        assert conn.execute("SELECT count(*) AS n FROM findings").fetchone()["n"] == 75


def test_platform_issues_are_remembered_per_purpose(store: PlatformStore) -> None:
    assert platform_issue(store, REPO, "dashboard:security") is None
    remember_platform_issue(store, REPO, "dashboard:security", 7, "codexk8s[bot]")
    remember_platform_issue(store, REPO, "self-improve", 9, "codexk8s[bot]", trigger_label="run:self-improve")
    assert platform_issue(store, REPO, "dashboard:security")["issue_number"] == 7
    remember_platform_issue(store, REPO, "dashboard:security", 12, "codexk8s[bot]")  # the old one was deleted
    assert platform_issue(store, REPO, "dashboard:security")["issue_number"] == 12
    (row,) = platform_issue_by_number(store, REPO, 9)
    assert row["purpose"] == "self-improve" and row["trigger_label"] == "run:self-improve"
