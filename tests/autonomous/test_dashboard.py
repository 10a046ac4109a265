"""The dashboard issue: one per repository and kind, edited in place, silent when nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from codexk8s_pipelines.autonomous.dashboard import MAX_LINES, render_dashboard, sync_dashboard
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.findings import FindingInput, dashboard_findings, sync_findings
from tests.github_server import GitHubServer, github_server, pygithub_client  # noqa: F401  (fixture)

REPO = "acme/shop"
T0 = datetime(2026, 11, 20, 2, 23, tzinfo=UTC)


def _row(title: str, severity: str, resolved: datetime | None = None) -> dict:
    return {"title": title, "severity": severity, "resolved_at": resolved}


def test_open_findings_come_first_by_severity_and_resolved_ones_are_checked_off_with_their_date() -> None:
    body = render_dashboard(
        "security",
        REPO,
        [_row("`six` low", "LOW"), _row("`jinja2` critical", "CRITICAL"), _row("`pyyaml` high", "HIGH")],
        [_row("`requests` fixed", "MEDIUM", T0)],
        notes=["OSV database snapshot 2024-10-10 is older than 7 days"],
    )
    lines = body.splitlines()
    assert lines[0] == "<!-- codexk8s:dashboard security -->"
    open_lines = [x for x in lines if x.startswith("- [ ]")]
    assert open_lines == ["- [ ] `jinja2` critical", "- [ ] `pyyaml` high", "- [ ] `six` low"]
    assert "- [x] ~~`requests` fixed~~ — resolved 2026-11-20" in lines
    assert "**3 open** · 1 resolved in the last 30 days" in body
    assert "- OSV database snapshot 2024-10-10 is older than 7 days" in lines


def test_a_long_list_is_cut_with_a_pointer_to_the_full_one() -> None:
    body = render_dashboard("freshness", REPO, [_row(f"dep {i:04d}", "LOW") for i in range(MAX_LINES + 5)], [])
    assert sum(1 for x in body.splitlines() if x.startswith("- [ ]")) == MAX_LINES
    assert "… and 5 more" in body
    assert len(body) < 65536


@pytest.fixture
def api(github_server: GitHubServer) -> RepoApi:  # noqa: F811
    github_server.state.add_repo(REPO)
    return RepoApi(pygithub_client(github_server), REPO)


def _publish(api: RepoApi, store: PlatformStore, findings: list[FindingInput], at: datetime):
    sync_findings(store, REPO, "security", findings, at)
    open_rows, resolved = dashboard_findings(store, REPO, "security", at)
    body = render_dashboard("security", REPO, open_rows, resolved)
    return sync_dashboard(api, store, REPO, "security", body, bool(open_rows))


def _writes(server: GitHubServer) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in server.state.requests if m in ("POST", "PATCH", "PUT", "DELETE")]


def test_second_run_with_the_same_findings_edits_nothing_and_a_fixed_one_is_checked_off(
    api: RepoApi,
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
) -> None:
    state = github_server.state
    findings = [FindingInput("a", "`jinja2` 2.10 GHSA-1", "CRITICAL"), FindingInput("b", "`six` 1.0 GHSA-2", "LOW")]
    first = _publish(api, store, findings, T0)
    assert first.action == "created"
    issue = state.issue(REPO, first.issue_number)
    assert issue.title == "codex-k8s: security findings" and issue.state == "open"
    assert "- [ ] `jinja2` 2.10 GHSA-1" in issue.body

    state.clear_requests()
    second = _publish(api, store, findings, T0 + timedelta(days=1))
    assert second.action == "unchanged" and second.issue_number == first.issue_number
    assert _writes(github_server) == []  # no edit, so no notification for watchers

    third = _publish(api, store, findings[:1], T0 + timedelta(days=2))
    assert third.action == "edited" and third.issue_number == first.issue_number
    body = state.issue(REPO, first.issue_number).body
    assert "- [x] ~~`six` 1.0 GHSA-2~~ — resolved 2026-11-22" in body
    assert "- [ ] `jinja2` 2.10 GHSA-1" in body
    assert len(state.repo(REPO).issues) == 1  # one dashboard issue, never a new one per run


def test_the_issue_closes_when_nothing_is_open_and_reopens_when_a_finding_returns(
    api: RepoApi,
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
) -> None:
    state = github_server.state
    number = _publish(api, store, [FindingInput("a", "`jinja2`", "HIGH")], T0).issue_number
    closed = _publish(api, store, [], T0 + timedelta(days=1))
    assert closed.action == "edited" and state.issue(REPO, number).state == "closed"
    assert _publish(api, store, [], T0 + timedelta(days=2)).action == "unchanged"
    reopened = _publish(api, store, [FindingInput("a", "`jinja2`", "HIGH")], T0 + timedelta(days=3))
    assert reopened.issue_number == number and state.issue(REPO, number).state == "open"


def test_nothing_is_opened_for_a_clean_repository(api: RepoApi, store: PlatformStore, github_server) -> None:  # noqa: F811
    assert _publish(api, store, [], T0).action == "skipped"
    assert github_server.state.repo(REPO).issues == {}


def test_a_deleted_dashboard_issue_is_replaced_and_recorded(
    api: RepoApi,
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
) -> None:
    state = github_server.state
    number = _publish(api, store, [FindingInput("a", "`jinja2`", "HIGH")], T0).issue_number
    with state.lock:
        del state.repo(REPO).issues[number]
    again = _publish(api, store, [FindingInput("a", "`jinja2`", "HIGH")], T0 + timedelta(days=1))
    assert again.action == "created" and again.issue_number != number
    assert _publish(api, store, [FindingInput("a", "`jinja2`", "HIGH")], T0 + timedelta(days=2)).action == "unchanged"
