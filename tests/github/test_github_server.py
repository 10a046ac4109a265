"""The fake GitHub server, exercised through real PyGithub so other tests can trust what it answers."""

from __future__ import annotations

import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import github
import pytest
import requests
from github import Auth, GithubException

from tests.github_server import (
    DEFAULT_APP_BOT_LOGIN,
    GitHubServer,
    GitHubState,
    app_key_pair,
    github_server,  # noqa: F401  (the fixture, used by name)
    pygithub_client,
)

REPO = "acme/widgets"


@pytest.fixture
def server(github_server: GitHubServer) -> GitHubServer:  # noqa: F811
    """The fake with one repo whose collaborators cover every permission level."""
    github_server.state.add_repo(
        REPO,
        collaborators={"alice": "admin", "bob": "write", "tina": "triage", "mia": "maintain", "rob": "read"},
    )
    return github_server


@pytest.fixture
def gh(server: GitHubServer) -> github.Github:
    return pygithub_client(server)


def issues_path() -> str:
    return f"/repos/{REPO}/issues"


def parse_links(header: str) -> dict[str, str]:
    """rel -> URL from a Link header."""
    links = {}
    for part in header.split(", "):
        url, rel = part.split("; ")
        links[rel.removeprefix('rel="').removesuffix('"')] = url.strip("<>")
    return links


def rate_header(status_headers: dict[str, str]) -> int:
    return int(status_headers["x-ratelimit-remaining"])


def test_get_repo(gh: github.Github, server: GitHubServer) -> None:
    repo = gh.get_repo(REPO)
    assert (repo.full_name, repo.name, repo.default_branch) == (REPO, "widgets", "main")
    assert repo.owner.login == "acme"
    assert repo.url == f"{server.url}/repos/{REPO}"


def test_unknown_repo_is_unknown_object(gh: github.Github) -> None:
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo("acme/missing")


def test_clock_advances_one_second_per_mutation() -> None:
    state = GitHubState()
    state.add_repo(REPO)
    start = state.now()
    first = state.add_issue(REPO, "one")
    second = state.add_issue(REPO, "two")
    assert state.issue(REPO, first).updated_at == start
    assert state.issue(REPO, second).updated_at == start + timedelta(seconds=1)
    assert state.advance(60) == start + timedelta(seconds=62)


def test_list_issues_since_includes_pulls(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    old = state.add_issue(REPO, "old issue")
    touched = state.add_issue(REPO, "touched later")
    state.advance(10)
    since = state.now()
    state.label(REPO, touched, "codex:plan")
    pr = state.add_pull(REPO, "the fix", head="codex/issue-2", linked_issue=touched)

    found = list(gh.get_repo(REPO).get_issues(state="all", since=since, sort="updated", direction="asc"))

    assert [issue.number for issue in found] == [touched, pr]
    assert found[0].pull_request is None
    assert found[1].pull_request is not None and found[1].pull_request.url.endswith(f"/pulls/{pr}")
    assert [label.name for label in found[0].labels] == ["codex:plan"]
    assert found[0].updated_at < found[1].updated_at
    assert old not in [issue.number for issue in found]
    assert (touched, pr) == (2, 3), "issues and pulls share one number sequence"


def test_issue_list_filters_by_state_and_labels(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    a = state.add_issue(REPO, "a", labels=["bug", "codex"])
    state.add_issue(REPO, "b", labels=["bug"])
    closed = state.add_issue(REPO, "c", labels=["bug", "codex"])
    state.set_issue_state(REPO, closed, "closed")
    repo = gh.get_repo(REPO)
    assert [i.number for i in repo.get_issues(labels=["bug", "codex"])] == [a]
    assert [i.number for i in repo.get_issues(state="closed")] == [closed]
    assert [i.number for i in repo.get_issues(state="all", direction="asc")] == [1, 2, 3]


def test_issue_events_show_labeled_with_actor_type(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    number = state.add_issue(REPO, "needs work")
    human = state.label(REPO, number, "codex:plan", actor="alice")
    bot = state.label(REPO, number, "codex:running", actor="ci[bot]", actor_type="Bot")
    removed = state.unlabel(REPO, number, "codex:plan", actor="ci[bot]", actor_type="Bot")

    events = list(gh.get_repo(REPO).get_issue(number).get_events())

    assert [e.id for e in events] == [human, bot, removed]
    assert [(e.event, e.label.name, e.actor.login, e.actor.type) for e in events] == [
        ("labeled", "codex:plan", "alice", "User"),
        ("labeled", "codex:running", "ci[bot]", "Bot"),
        ("unlabeled", "codex:plan", "ci[bot]", "Bot"),
    ]
    assert state.events(REPO, number)[1]["actor"]["type"] == "Bot"
    assert state.labels(REPO, number) == ["codex:running"]


def test_add_and_remove_labels_records_token_actor(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    number = state.add_issue(REPO, "label me")
    issue = gh.get_repo(REPO).get_issue(number)

    issue.add_to_labels("codex:plan", "priority")
    assert state.labels(REPO, number) == ["codex:plan", "priority"]
    issue.remove_from_labels("codex:plan")
    assert state.labels(REPO, number) == ["priority"]
    issue.set_labels("done")
    assert state.labels(REPO, number) == ["done"]

    events = state.events(REPO, number)
    assert [(e["event"], e["label"]["name"]) for e in events] == [
        ("labeled", "codex:plan"),
        ("labeled", "priority"),
        ("unlabeled", "codex:plan"),
        ("unlabeled", "priority"),
        ("labeled", "done"),
    ]
    assert {(e["actor"]["login"], e["actor"]["type"]) for e in events} == {("codexk8s[bot]", "Bot")}


def test_removing_an_absent_label_is_404(gh: github.Github, server: GitHubServer) -> None:
    number = server.state.add_issue(REPO, "no labels")
    with pytest.raises(GithubException) as caught:
        gh.get_repo(REPO).get_issue(number).remove_from_labels("nope")
    assert caught.value.status == 404
    assert caught.value.data["message"] == "Label does not exist"


def test_create_and_edit_comment(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    number = state.add_issue(REPO, "talk")
    before = state.issue(REPO, number).updated_at
    issue = gh.get_repo(REPO).get_issue(number)

    comment = issue.create_comment("working on it")
    comment.edit("done")

    assert state.comments(REPO, number) == [{"id": comment.id, "body": "done", "user": "codexk8s[bot]"}]
    assert state.issue(REPO, number).updated_at > before
    again = gh.get_repo(REPO).get_issue(number).get_comment(comment.id)
    assert (again.body, again.user.login, again.user.type) == ("done", "codexk8s[bot]", "Bot")
    assert [c.body for c in issue.get_comments()] == ["done"]


@pytest.mark.parametrize(
    ("login", "legacy", "role"),
    [
        ("alice", "admin", "admin"),
        ("mia", "write", "maintain"),
        ("bob", "write", "write"),
        ("tina", "read", "triage"),
        ("rob", "read", "read"),
        ("stranger", "none", "none"),
    ],
)
def test_collaborator_permission(gh: github.Github, login: str, legacy: str, role: str) -> None:
    repo = gh.get_repo(REPO)
    assert repo.get_collaborator_permission(login) == legacy
    assert repo.get_collaborator_role_name(login) == role
    _, data = repo.requester.requestJsonAndCheck("GET", f"/repos/{REPO}/collaborators/{login}/permission")
    assert data["role_name"] == role and data["user"]["login"] == login


def test_set_permission_changes_the_answer(gh: github.Github, server: GitHubServer) -> None:
    server.state.set_permission(REPO, "rob", "maintain")
    assert gh.get_repo(REPO).get_collaborator_role_name("rob") == "maintain"


def test_pulls_and_reviews(gh: github.Github, server: GitHubServer) -> None:
    state = server.state
    issue = state.add_issue(REPO, "feature")
    number = state.add_pull(REPO, "implement feature", body="Done.", labels=["codex"], linked_issue=issue)
    before = state.issue(REPO, number).updated_at
    approved = state.review(REPO, number, "APPROVED", user="bob")
    changes = state.review(REPO, number, "CHANGES_REQUESTED", user="lint[bot]", user_type="Bot")
    assert state.issue(REPO, number).updated_at > before

    repo = gh.get_repo(REPO)
    (pull,) = repo.get_pulls(state="open")
    assert (pull.number, pull.head.ref, pull.base.ref, pull.user.login) == (number, "codex/issue-1", "main", "alice")
    assert pull.body == f"Done.\n\nCloses #{issue}"
    assert [label.name for label in pull.labels] == ["codex"]
    reviews = list(pull.get_reviews())
    assert [(r.id, r.state, r.user.login, r.user.type) for r in reviews] == [
        (approved, "APPROVED", "bob", "User"),
        (changes, "CHANGES_REQUESTED", "lint[bot]", "Bot"),
    ]
    assert reviews[0].submitted_at is not None


def test_create_and_edit_pull(gh: github.Github, server: GitHubServer) -> None:
    repo = gh.get_repo(REPO)
    pull = repo.create_pull(base="main", head="codex/issue-7", title="WIP", body="first")
    pull.edit(title="Ready", body="second", state="closed")

    record = server.state.issue(REPO, pull.number)
    assert (record.title, record.body, record.state) == ("Ready", "second", "closed")
    assert [p.number for p in repo.get_pulls(state="closed")] == [pull.number]
    assert list(repo.get_pulls(state="open")) == []
    assert repo.get_pull(pull.number).head.ref == "codex/issue-7"


def test_contents(gh: github.Github, server: GitHubServer) -> None:
    sha = server.state.put_file(REPO, "docs/plan.md", "# Plan\n" * 20)
    server.state.put_file(REPO, "docs/plan.md", "branch text", ref="codex/issue-1")
    repo = gh.get_repo(REPO)

    content = repo.get_contents("docs/plan.md")
    assert not isinstance(content, list)
    assert (content.decoded_content.decode(), content.sha, content.encoding) == ("# Plan\n" * 20, sha, "base64")
    on_branch = repo.get_contents("docs/plan.md", ref="codex/issue-1")
    assert not isinstance(on_branch, list) and on_branch.decoded_content == b"branch text"
    listing = repo.get_contents("docs")
    assert isinstance(listing, list) and [entry.path for entry in listing] == ["docs/plan.md"]
    with pytest.raises(github.UnknownObjectException):
        repo.get_contents("missing.md")


def test_conditional_request_is_free(gh: github.Github, server: GitHubServer) -> None:
    server.state.add_issue(REPO, "cache me")
    requester = gh.requester
    params = {"state": "all", "per_page": 100}

    status, headers, body = requester.requestJson("GET", issues_path(), parameters=params)
    assert status == 200 and body
    etag = headers["etag"]
    remaining = server.state.rate_limit_remaining

    status, headers, body = requester.requestJson(
        "GET", issues_path(), parameters=params, headers={"If-None-Match": etag}
    )
    assert (status, body) == (304, "")
    assert rate_header(headers) == remaining == server.state.rate_limit_remaining
    assert headers["etag"] == etag

    server.state.label(REPO, 1, "changed")
    status, headers, _ = requester.requestJson("GET", issues_path(), parameters=params, headers={"If-None-Match": etag})
    assert status == 200 and headers["etag"] != etag
    assert server.state.rate_limit_remaining == remaining - 1


def test_if_modified_since_on_single_issue(gh: github.Github, server: GitHubServer) -> None:
    number = server.state.add_issue(REPO, "dated")
    path = f"{issues_path()}/{number}"
    status, headers, _ = gh.requester.requestJson("GET", path)
    assert status == 200
    status, _, _ = gh.requester.requestJson("GET", path, headers={"If-Modified-Since": headers["last-modified"]})
    assert status == 304


def test_every_response_carries_rate_limit_headers(gh: github.Github, server: GitHubServer) -> None:
    start = server.state.rate_limit_remaining
    gh.get_repo(REPO)
    _, headers, _ = gh.requester.requestJson("GET", f"/repos/{REPO}")
    assert headers["x-ratelimit-limit"] == "5000"
    assert rate_header(headers) == start - 2 == server.state.rate_limit_remaining
    assert int(headers["x-ratelimit-used"]) == 2
    assert int(headers["x-ratelimit-reset"]) > time.time()
    assert headers["x-ratelimit-resource"] == "core"
    assert gh.rate_limiting == (start - 2, 5000)
    assert gh.get_rate_limit().resources.core.remaining == start - 2, "GET /rate_limit is free"


@pytest.mark.parametrize("fault", ["500", "502", "503"])
def test_server_error_faults(gh: github.Github, server: GitHubServer, fault: str) -> None:
    server.state.inject(fault, path_regex=r"/repos/acme/widgets$")
    with pytest.raises(GithubException) as caught:
        gh.get_repo(REPO)
    assert type(caught.value) is GithubException
    assert caught.value.status == int(fault)
    assert gh.get_repo(REPO).full_name == REPO, "the fault is used up after one request"


def test_primary_rate_limit_fault(gh: github.Github, server: GitHubServer) -> None:
    server.state.inject("rate_limit_primary")
    with pytest.raises(github.RateLimitExceededException) as caught:
        gh.get_repo(REPO)
    headers = caught.value.headers or {}
    assert caught.value.status == 403
    assert headers["x-ratelimit-remaining"] == "0"
    assert 50 < int(headers["x-ratelimit-reset"]) - time.time() <= 61
    assert caught.value.data["message"].startswith("API rate limit exceeded for")


def test_secondary_rate_limit_fault(gh: github.Github, server: GitHubServer) -> None:
    server.state.inject("rate_limit_secondary")
    with pytest.raises(github.RateLimitExceededException) as caught:
        gh.get_repo(REPO)
    assert caught.value.status == 403
    assert (caught.value.headers or {})["retry-after"] == "30"
    assert caught.value.data["message"].startswith("You have exceeded a secondary rate limit")


def test_429_fault_is_a_plain_github_exception_in_pygithub(gh: github.Github, server: GitHubServer) -> None:
    """PyGithub 2.10 only maps 403 to RateLimitExceededException; a 429 stays a GithubException(429)."""
    server.state.inject("rate_limit_429")
    with pytest.raises(GithubException) as caught:
        gh.get_repo(REPO)
    assert not isinstance(caught.value, github.RateLimitExceededException)
    assert caught.value.status == 429
    assert (caught.value.headers or {})["retry-after"] == "30"


def test_timeout_fault(server: GitHubServer) -> None:
    server.state.timeout_seconds = 3
    gh = pygithub_client(server, timeout=1)
    server.state.inject("timeout")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        gh.get_repo(REPO)
    assert time.monotonic() - started < 2.5
    assert gh.get_repo(REPO).full_name == REPO
    assert server.state.requests[0][2] == 0, "a dropped request is logged with status 0"


def test_fault_matching_by_method_path_and_times(gh: github.Github, server: GitHubServer) -> None:
    number = server.state.add_issue(REPO, "x")
    server.state.inject("500", method="POST", path_regex=r"/labels$", times=2)
    issue = gh.get_repo(REPO).get_issue(number)
    for _ in range(2):
        with pytest.raises(GithubException):
            issue.add_to_labels("a")
    issue.add_to_labels("a")
    assert server.state.labels(REPO, number) == ["a"]


def test_fail_rate_is_deterministic_per_seed(server: GitHubServer) -> None:
    def statuses(seed: int) -> list[int]:
        server.state.fail_rate(0.5, seed=seed, faults=["500", "503", "rate_limit_secondary", "rate_limit_429"])
        gh = pygithub_client(server)
        codes = [gh.requester.requestJson("GET", f"/repos/{REPO}")[0] for _ in range(20)]
        server.state.clear_faults()
        return codes

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) - {200} and 200 in first
    assert set(first) <= {200, 500, 503, 403, 429}


def test_exhausted_budget_answers_403_until_reset(gh: github.Github, server: GitHubServer) -> None:
    server.state.rate_limit_remaining = 1
    gh.get_repo(REPO)
    with pytest.raises(github.RateLimitExceededException):
        gh.get_repo(REPO)
    server.state.reset_rate_limit()
    assert gh.get_repo(REPO).full_name == REPO


def test_pagination_over_250_issues(server: GitHubServer) -> None:
    for n in range(250):
        server.state.add_issue(REPO, f"issue {n}")
    gh = pygithub_client(server)
    repo = gh.get_repo(REPO)
    server.state.clear_requests()

    numbers = [issue.number for issue in repo.get_issues(state="all", direction="asc")]

    assert numbers == list(range(1, 251))
    pages = [path for method, path, _ in server.state.requests if method == "GET"]
    assert len(pages) == 9  # 30 per page by default
    assert repo.get_issues(state="all").totalCount == 250

    big = pygithub_client(server, per_page=100).get_repo(REPO)
    server.state.clear_requests()
    assert len(list(big.get_issues(state="all"))) == 250
    assert len(server.state.requests) == 3

    _, headers, _ = gh.requester.requestJson("GET", issues_path(), parameters={"per_page": 100, "page": 2})
    links = parse_links(headers["link"])
    assert set(links) == {"prev", "first", "next", "last"}
    assert links["next"].startswith(f"{server.url}/repos/{REPO}/issues?")
    assert parse_qs(urlsplit(links["next"]).query) == {"page": ["3"], "per_page": ["100"]}
    assert parse_qs(urlsplit(links["first"]).query)["page"] == ["1"]


def test_app_installation_auth(server: GitHubServer) -> None:
    private_pem, public_pem = app_key_pair()
    installation_id = server.state.add_app(12345, public_pem)
    app_auth = Auth.AppAuth(12345, private_pem)

    integration = github.GithubIntegration(auth=app_auth, base_url=server.url)
    assert integration.get_repo_installation("acme", "widgets").id == installation_id

    gh = pygithub_client(server, auth=app_auth.get_installation_auth(installation_id))
    number = gh.get_repo(REPO).get_issue(server.state.add_issue(REPO, "by app")).number
    gh.get_repo(REPO).get_issue(number).add_to_labels("codex:plan")
    assert server.state.events(REPO, number)[0]["actor"]["login"] == DEFAULT_APP_BOT_LOGIN

    forged_pem, _ = app_key_pair()
    forged = pygithub_client(server, auth=Auth.AppAuth(12345, forged_pem).get_installation_auth(installation_id))
    with pytest.raises(GithubException) as caught:
        forged.get_repo(REPO)
    assert caught.value.status == 401


def test_bad_credentials(server: GitHubServer) -> None:
    gh = pygithub_client(server, auth=Auth.Token("wrong"))
    with pytest.raises(github.BadCredentialsException):
        gh.get_repo(REPO)
    status, _, _ = pygithub_client(server).requester.requestJson("GET", "/repos/acme/widgets", headers={})
    assert status == 200


def test_requests_are_logged_and_latency_applies(gh: github.Github, server: GitHubServer) -> None:
    server.state.latency = 0.05
    started = time.monotonic()
    gh.get_repo(REPO)
    assert time.monotonic() - started >= 0.05
    assert server.state.requests == [("GET", f"/repos/{REPO}", 200)]


def test_server_shuts_down_cleanly() -> None:
    with GitHubServer() as server:
        url = server.url
        assert requests.get(f"{url}/rate_limit", headers={"Authorization": "token test-token"}, timeout=2).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/rate_limit", timeout=1)
