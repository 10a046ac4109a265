"""The service comment carries the issue's story so far, collapsed under "History"."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.delivery import publish
from codexk8s_pipelines.delivery.context import StageContext
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.store import PlatformStore
from tests.github_server import GitHubServer, github_server  # noqa: F401  (fixture)
from tests.insight.test_trace import REPO, write_story

GITHUB_TOKEN = "ghp_" + "Z9y8X7w6V5u4T3s2R1q0" * 2


def _context(issue: int, key: str) -> StageContext:
    return StageContext(
        repository=REPO, correlation_key=key, stage="dev", revise=False, role="dev", mode="work",
        branch=f"codex/issue-{issue}", base_branch="main", issue_number=issue, issue_title="t", issue_body="",
        comments=(), pr_number=None, pr_title="", pr_body="", pr_url=None, review_threads=(),
        trigger_label="run:dev", model="gpt-5.4", reasoning="high", actor="alice", comment_number=issue,
    )  # fmt: skip


def test_the_service_comment_shows_the_history_collapsed(
    store: PlatformStore,
    github_server: GitHubServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    monkeypatch.delenv("CODEXK8S_GITHUB_APP_ID", raising=False)
    monkeypatch.delenv("CODEXK8S_DAGSTER_URL", raising=False)
    github_server.state.add_token(GITHUB_TOKEN, "codexk8s[bot]", type="Bot")
    github_server.state.add_repo(REPO)
    issue = github_server.state.add_issue(REPO, "Checkout fails")
    expected = write_story(store, issue)
    api = GitHubResource().repo_api(REPO)
    ctx = _context(issue, correlation_key(REPO, issue, "run:dev", 99))
    publish.show(api, store, ctx, publish.view_of(ctx, "started", "ffff6666-now", "en"))
    (comment,) = github_server.state.comments(REPO, issue)
    body = comment["body"]
    assert "<details><summary>History</summary>" in body and body.rstrip().endswith("</details>")
    history = body[body.index("<details>") :]
    shown = [line.split(": ", 1)[1] for line in history.splitlines() if line.startswith("- `")]
    assert shown == expected  # every step so far, oldest first (fewer than the collapsed limit)
    assert body.index("Agent working") < body.index("<details>")
