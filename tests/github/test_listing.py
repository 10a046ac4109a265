"""The conditional listing of changed issues and PRs (`RepoApi.updated_since`) over several pages: GitHub's ETag
covers page 1 only, `page=2` counts from the front of a listing that moves while it is read, and a read has a cap.
"""

from __future__ import annotations

from typing import Any

import pytest

from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from tests.github_server import GitHubServer, github_server  # noqa: F401  (fixture)

REPO = "acme/shop"


def _api(server: GitHubServer) -> RepoApi:
    creds = GitHubCredentials(api_url=server.url, token=server.token)
    return RepoApi(GitHubConnector(creds).for_repository(REPO), REPO)


def _numbers(items: list[dict[str, Any]]) -> list[int]:
    return sorted(int(i["number"]) for i in items)


def _since(server: GitHubServer) -> str:
    return server.state.advance(10).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_one_page_keeps_its_etag_several_pages_do_not(github_server: GitHubServer) -> None:  # noqa: F811
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(130)]
    since = _since(github_server)
    for n in numbers[:40]:
        state.label(REPO, n, "triage")
    one = _api(github_server).updated_since(since, None)
    assert (one.pages, one.rest_from, len(one.items)) == (1, None, 40) and one.etag
    for n in numbers[40:]:
        state.label(REPO, n, "triage")
    several = _api(github_server).updated_since(since, None)
    assert _numbers(several.items) == numbers  # every item once
    assert (several.pages, several.rest_from, several.etag) == (2, None, None)  # an ETag of page 1 is worth nothing


def test_an_item_changed_between_two_pages_is_not_passed_over(
    github_server: GitHubServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Someone edits an item of page 1 while page 2 is asked for: by offset, page 2 then starts one item later and
    its first item is read by no page. By time, it is on the next page as it was."""
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(150)]
    since = _since(github_server)
    for n in numbers:
        state.label(REPO, n, "triage")
    real_page = RepoApi._page
    edited: list[int] = []

    def page(self: RepoApi, url: str, params: dict[str, Any] | None = None) -> Any:
        if url.split("?")[0].endswith("/issues") and not edited:  # the listing's second request, by offset or time
            edited.append(state.label(REPO, numbers[49], "bug", actor="erin"))
        return real_page(self, url, params)

    monkeypatch.setattr(RepoApi, "_page", page)
    listing = _api(github_server).updated_since(since, None)
    assert edited
    assert _numbers(listing.items) == numbers
    assert listing.rest_from is None


def test_a_listing_longer_than_a_read_says_where_the_next_read_starts(
    github_server: GitHubServer,  # noqa: F811
) -> None:
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(250)]
    since = _since(github_server)
    for n in numbers:
        state.label(REPO, n, "triage")
    api = _api(github_server)
    first = api.updated_since(since, None, max_pages=2)
    assert first.pages == 2 and first.rest_from is not None
    updated = {int(i["number"]): str(i["updated_at"]) for i in first.items}
    assert all(at <= first.rest_from for at in updated.values())  # nothing read past where the next read starts
    rest = api.updated_since(first.rest_from, None, max_pages=2)
    assert rest.rest_from is None
    assert sorted({*updated, *(int(i["number"]) for i in rest.items)}) == numbers


def test_a_full_page_of_one_second_is_read_on_by_offset(github_server: GitHubServer) -> None:  # noqa: F811
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(230)]
    since = _since(github_server)
    with state.same_moment():  # one bulk edit: 150 issues changed in the same second
        for n in numbers[:150]:
            state.label(REPO, n, "triage")
    for n in numbers[150:]:
        state.label(REPO, n, "triage")
    listing = _api(github_server).updated_since(since, None)
    assert _numbers(listing.items) == numbers
    assert listing.rest_from is None  # read to the end and nothing moved: nothing to read again


def test_a_move_inside_a_second_read_by_offset_reads_that_second_again(
    github_server: GitHubServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(150)]
    since = _since(github_server)
    with state.same_moment() as moment:
        for n in numbers:
            state.label(REPO, n, "triage")
    real_page = RepoApi._page
    edited: list[int] = []

    def page(self: RepoApi, url: str, params: dict[str, Any] | None = None) -> Any:
        if "page=2" in url and not edited:
            edited.append(state.label(REPO, numbers[10], "bug", actor="erin"))
        return real_page(self, url, params)

    monkeypatch.setattr(RepoApi, "_page", page)
    listing = _api(github_server).updated_since(since, None)
    assert edited
    assert listing.rest_from == moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # the next read lists that second again


def test_a_cut_read_that_started_in_a_full_second_still_gets_further(github_server: GitHubServer) -> None:  # noqa: F811
    """150 issues changed in one second and 150 after, read from that second 2 pages at a time: going back to that
    second after each read would read the same 2 pages for good."""
    state = github_server.state
    state.add_repo(REPO)
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(300)]
    state.advance(10)
    with state.same_moment() as moment:
        for n in numbers[:150]:
            state.label(REPO, n, "triage")
    for n in numbers[150:]:
        state.label(REPO, n, "triage")
    api = _api(github_server)
    since, seen = moment.strftime("%Y-%m-%dT%H:%M:%SZ"), set[int]()
    for _ in range(4):
        listing = api.updated_since(since, None, max_pages=2)
        seen |= {int(i["number"]) for i in listing.items}
        if listing.rest_from is None:
            break
        assert listing.rest_from > since
        since = listing.rest_from
    assert listing.rest_from is None and sorted(seen) == numbers
