"""Our GitHub client on real PyGithub: token and App auth, tick-safe retries and timeouts, rate-limit reading."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import requests
from github.GithubException import GithubException

from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from codexk8s_pipelines.github.rate_limit import rate_limit_of
from tests.github_server import GitHubServer, app_key_pair, github_server  # noqa: F401

REPO = "acme/shop"


def _api(server: GitHubServer, **kw: object) -> RepoApi:
    creds = GitHubCredentials(api_url=server.url, token=server.token, **kw)  # type: ignore[arg-type]
    return RepoApi(GitHubConnector(creds).for_repository(REPO), REPO)


def test_github_app_installation_auth(github_server: GitHubServer) -> None:  # noqa: F811
    private, public = app_key_pair()
    github_server.state.add_repo(REPO)
    number = github_server.state.add_issue(REPO, "hello")
    github_server.state.add_app("4242", public, repos=[REPO])
    creds = GitHubCredentials(api_url=github_server.url, app_id="4242", app_private_key=private)
    assert creds.configured and creds.uses_app
    connector = GitHubConnector(creds)
    api = RepoApi(connector.for_repository(REPO), REPO)
    api.add_labels(number, ["need:input"])
    (event,) = github_server.state.events(REPO, number)
    assert event["actor"]["login"] == "codexk8s-app[bot]"
    assert connector.for_repository(REPO) is api.gh  # one client per installation, reused


def test_credentials_from_the_environment_never_show_secrets(tmp_path, monkeypatch) -> None:
    private, _ = app_key_pair()
    key_file = tmp_path / "app.pem"
    key_file.write_text(private)
    monkeypatch.setenv("CODEXK8S_GITHUB_APP_ID", "7")
    monkeypatch.setenv("CODEXK8S_GITHUB_APP_PRIVATE_KEY", str(key_file))
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", "ghp_" + "x" * 36)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", "https://github.example.com/api/v3/")
    creds = GitHubCredentials.from_environment()
    assert creds.app_private_key == private and creds.api_url == "https://github.example.com/api/v3"
    assert repr(creds) == "GitHubCredentials(api_url='https://github.example.com/api/v3', mode=app)"
    assert "ghp_" not in repr(creds) and "PRIVATE" not in str(creds)
    monkeypatch.delenv("CODEXK8S_GITHUB_APP_PRIVATE_KEY")
    monkeypatch.delenv("CODEXK8S_GITHUB_TOKEN")
    assert GitHubCredentials.from_environment().missing_reason() == (
        "CODEXK8S_GITHUB_APP_ID is set but CODEXK8S_GITHUB_APP_PRIVATE_KEY is not"
    )


def test_server_errors_are_retried_twice_then_raised(github_server: GitHubServer) -> None:  # noqa: F811
    github_server.state.add_repo(REPO)
    github_server.state.add_issue(REPO, "x")
    github_server.state.inject("502", path_regex=r".*/issues$", times=2)
    assert _api(github_server).latest_update() is not None  # two failures absorbed by the retries
    github_server.state.inject("500", path_regex=r".*/issues$", times=3)
    with pytest.raises(GithubException) as info:
        _api(github_server).latest_update()
    assert info.value.status == 500


def test_a_hanging_github_costs_one_timeout_not_the_tick(github_server: GitHubServer) -> None:  # noqa: F811
    github_server.state.add_repo(REPO)
    github_server.state.timeout_seconds = 5
    github_server.state.inject("timeout", path_regex=r".*/issues$")
    started = time.monotonic()
    # urllib3 gives up at once (read retries are 0) and requests reports it as a connection error
    with pytest.raises((requests.exceptions.Timeout, requests.exceptions.ConnectionError), match="timed out"):
        _api(github_server, timeout_seconds=1).latest_update()
    assert time.monotonic() - started < 3  # read timeouts are not retried inside a tick


@pytest.mark.parametrize(
    ("fault", "kind", "seconds"),
    [
        ("rate_limit_primary", "primary", 60),
        ("rate_limit_secondary", "secondary", 30),
        ("rate_limit_429", "secondary", 30),
    ],
)
def test_rate_limits_are_recognised_with_their_resume_time(
    github_server: GitHubServer,  # noqa: F811
    fault: str,
    kind: str,
    seconds: int,
) -> None:
    github_server.state.add_repo(REPO)
    github_server.state.inject(fault, path_regex=r".*/issues$")
    started = time.monotonic()
    with pytest.raises(GithubException) as info:
        _api(github_server).latest_update()
    assert time.monotonic() - started < 2  # PyGithub did not sleep through it
    now = datetime.now(UTC)
    limit = rate_limit_of(info.value, now)
    assert limit is not None and limit.kind == kind
    assert abs((limit.resume_at - now).total_seconds() - seconds) <= 2
    assert limit.describe(now).startswith(f"GitHub {kind} rate limit: backing off for")


def test_other_errors_are_not_rate_limits(github_server: GitHubServer) -> None:  # noqa: F811
    github_server.state.add_repo(REPO)
    github_server.state.inject("500", path_regex=r".*/issues$", times=3)
    with pytest.raises(GithubException) as info:
        _api(github_server).latest_update()
    assert rate_limit_of(info.value) is None
