"""A run's service comment is found by its marker only among the platform's own comments (review 26a, F4): an
outsider who posts a run's (predictable) marker first gets no edit and is not recorded; the platform's own comment
that was posted but not recorded is still found. Both ways the platform writes to GitHub: a token (it knows its
login from `GET /user`) and a GitHub App (its installation token cannot read `/user`; `GET /app` with the JWT gives
the slug, and the bot is `<slug>[bot]`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from codexk8s_pipelines.github.service_comment import MARKER, RunView, find_comment, render, upsert
from tests.github_server import (
    DEFAULT_APP_BOT_LOGIN,
    DEFAULT_TOKEN_LOGIN,
    GitHubServer,
    app_key_pair,
    github_server,  # noqa: F401  (fixture)
)

REPO = "acme/shop"
KEY = f"{REPO}#1:run:dev:9"


def _token_api(server: GitHubServer) -> RepoApi:
    creds = GitHubCredentials(api_url=server.url, token=server.token)
    return RepoApi(GitHubConnector(creds).for_repository(REPO), REPO)


def _app_api(server: GitHubServer) -> RepoApi:
    private, public = app_key_pair()
    server.state.add_app("4242", public, repos=[REPO])
    creds = GitHubCredentials(api_url=server.url, app_id="4242", app_private_key=private)
    return RepoApi(GitHubConnector(creds).for_repository(REPO), REPO)


WAYS: list[tuple[str, Callable[[GitHubServer], RepoApi], str]] = [
    ("token", _token_api, DEFAULT_TOKEN_LOGIN),
    ("app", _app_api, DEFAULT_APP_BOT_LOGIN),
]


def _view() -> RunView:
    return RunView(correlation_key=KEY, phase="created", stage="dev", revise=False, role="dev")


def _issue(server: GitHubServer, make_api: Callable[[GitHubServer], RepoApi]) -> tuple[Any, int, RepoApi]:
    """The fake GitHub's state, a new issue of REPO, and the API the platform reads it with (a token or an App)."""
    state = server.state
    state.add_repo(REPO)
    return state, state.add_issue(REPO, "Checkout fails"), make_api(server)


@pytest.fixture(params=WAYS, ids=[w[0] for w in WAYS])
def way(request: pytest.FixtureRequest) -> tuple[Callable[[GitHubServer], RepoApi], str]:
    """How the platform reaches GitHub (a token, an App) and the login it then writes as."""
    return request.param[1], request.param[2]


def test_an_outsiders_marker_comment_is_not_taken_as_the_runs(
    github_server: GitHubServer,  # noqa: F811
    way: tuple[Callable[[GitHubServer], RepoApi], str],
) -> None:
    make_api, login = way
    state, number, api = _issue(github_server, make_api)
    assert api.own_login() == login
    squat_body = MARKER.format(key=KEY) + "\n✅ Run finished (not really)"
    squat = state.add_comment(REPO, number, squat_body, user="mallory")
    state.add_comment(REPO, number, MARKER.format(key=KEY) + "\nanother App's copy", user="lint[bot]")
    assert find_comment(api, number, KEY) is None
    posted = upsert(api, number, _view(), None)  # publish.show's first call: no comment recorded yet
    by_id = {c["id"]: c for c in state.comments(REPO, number)}
    assert posted != squat and by_id[posted]["user"] == login
    assert by_id[squat]["body"] == squat_body  # the outsider's comment was not edited


def test_the_platforms_own_unrecorded_comment_is_found_again(
    github_server: GitHubServer,  # noqa: F811
    way: tuple[Callable[[GitHubServer], RepoApi], str],
) -> None:
    state, number, api = _issue(github_server, way[0])
    state.add_comment(REPO, number, MARKER.format(key=KEY) + "\nsquatted", user="mallory")
    own = api.create_comment(number, render(_view()))["id"]  # posted, then the run died before recording it
    assert upsert(api, number, _view(), None) == own
    assert len(state.comments(REPO, number)) == 2  # no duplicate


def test_without_its_own_login_the_platform_takes_no_marker_comment(github_server: GitHubServer) -> None:  # noqa: F811
    state, number, api = _issue(github_server, _token_api)
    api.create_comment(number, render(_view()))
    state.inject("500", path_regex=r"^/user$", times=None)  # GitHub will not say who the token is
    assert api.own_login() is None
    assert find_comment(api, number, KEY) is None  # at worst a second comment, never someone else's


def test_a_runs_comment_is_found_past_two_thousand_comments(github_server: GitHubServer) -> None:  # noqa: F811
    """A long discussion (2,150 comments, 22 pages): the run's comment, posted late and not recorded, is found
    again, and the comments a run reads are the newest. Read from the front, the first 2,000 were all there was: the
    platform posted a new comment at each update, and the agent's context was the oldest discussion."""
    state, number, api = _issue(github_server, _token_api)
    for n in range(2050):
        state.add_comment(REPO, number, f"comment {n}", user="carol")
    own = api.create_comment(number, render(_view()))["id"]
    for n in range(2050, 2150):
        state.add_comment(REPO, number, f"comment {n}", user="carol")
    assert upsert(api, number, _view(), None) == own
    assert len(state.comments(REPO, number)) == 2151  # edited, no second comment
    newest = [c["body"] for c in api.comments(number)]
    assert newest[-1] == "comment 2149" and newest[0] == "comment 200" and len(newest) == 1951  # pages 3-22
    recorded = find_comment(api, number, KEY, recorded=own)
    assert recorded is not None and recorded["id"] == own


def test_a_recorded_comment_of_another_issue_is_not_taken(github_server: GitHubServer) -> None:  # noqa: F811
    state, number, api = _issue(github_server, _token_api)
    other = state.add_issue(REPO, "Another")
    elsewhere = api.create_comment(other, render(_view()))["id"]
    assert find_comment(api, number, KEY, recorded=elsewhere) is None
    assert find_comment(api, other, KEY, recorded=elsewhere)["id"] == elsewhere  # type: ignore[index]
    assert find_comment(api, number, KEY, recorded=999_999) is None  # deleted since
