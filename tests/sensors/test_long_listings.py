"""Listings of changes longer than one page: more than 100 issues changed since the cursor (a bulk edit).

GitHub's ETag covers page 1 only, and in a listing sorted by update time a later change lands past page 1: kept,
that ETag was answered 304 on every later poll and no label started anything again. Paged by offset, an item
edited while the listing was read slid from page 2 onto page 1 and was read by no page, while `since` moved past
it. What a user sees: the label put after (or during) a bulk edit starts its run."""

from __future__ import annotations

from typing import Any

import pytest

import codexk8s_pipelines.github.api as github_api
from codexk8s_pipelines.github.api import RepoApi
from sensors.github import github_issue_labels_sensor as issue_sensor

from .conftest import REPO, Intake


def _run_keys(intake: Intake, ticks: int) -> list[str]:
    keys: list[str] = []
    for _ in range(ticks):
        keys += [r.run_key for r in intake.tick(issue_sensor).run_requests]
    return keys


def test_a_label_after_a_bulk_edit_of_120_issues_starts_its_run_and_idle_polls_are_free_again(
    intake: Intake,
) -> None:
    state = intake.state
    target = state.add_issue(REPO, "Checkout fails")  # untouched by the bulk edit
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(120)]
    intake.tick(issue_sensor)  # the first look
    state.advance(10)
    for n in numbers:  # a bulk edit: 120 issues get "triage" within two minutes
        state.label(REPO, n, "triage")
    assert _run_keys(intake, 2) == []
    state.advance(60)
    event = state.label(REPO, target, "run:dev", actor="alice")
    assert _run_keys(intake, 3) == [f"{REPO}#{target}:run:dev:{event}"]
    state.clear_requests()
    assert _run_keys(intake, 2) == []
    assert [status for _, _, status in state.requests] == [304, 304]  # one page again: its ETag holds


def test_an_issue_edited_while_the_listing_is_read_is_not_passed_over(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """150 changes over 5 minutes, alice's run:dev the 101st; while the listing's second request is on its way,
    erin labels issue 50 (on page 1): by offset, alice's issue slid onto page 1 and no page held it."""
    state = intake.state
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(150)]
    intake.tick(issue_sensor)
    state.advance(10)
    event = 0
    for i, n in enumerate(numbers):
        if i == 100:
            event = state.label(REPO, n, "run:dev", actor="alice")
        else:
            state.label(REPO, n, "triage")
        state.advance(1)
    real_page = RepoApi._page
    edited: list[int] = []

    def page(self: RepoApi, url: str, params: dict[str, Any] | None = None) -> Any:
        if url.split("?")[0].endswith("/issues") and not edited:  # the listing's second request
            edited.append(state.label(REPO, numbers[49], "bug", actor="erin"))
        return real_page(self, url, params)

    monkeypatch.setattr(RepoApi, "_page", page)
    keys = _run_keys(intake, 1)
    monkeypatch.setattr(RepoApi, "_page", real_page)
    keys += _run_keys(intake, 3)
    assert edited
    assert keys == [f"{REPO}#{numbers[100]}:run:dev:{event}"]


def test_a_listing_longer_than_one_read_is_read_on_next_tick_and_said_so(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read takes 2 pages here (20 in production): 250 changed issues are read over two ticks, the tick says
    where it stopped, and an issue labelled early but changed again last (listed last) still starts its run: the
    events' horizon stays where it was until the whole listing was read."""
    monkeypatch.setattr(github_api, "MAX_PAGES", 2)
    state = intake.state
    target = state.add_issue(REPO, "Checkout fails")
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(250)]
    intake.tick(issue_sensor)
    state.advance(10)
    event = state.label(REPO, target, "run:dev", actor="alice")
    for n in numbers:
        state.label(REPO, n, "triage")
        state.advance(5)  # over 20 minutes: past the events' grace before the last change
    state.label(REPO, target, "bug", actor="erin")  # the target is listed last
    first = intake.tick(issue_sensor)
    assert first.run_requests == []
    assert "the listing of changes was cut after 2 pages" in (first.skip_message or "")
    assert _run_keys(intake, 2) == [f"{REPO}#{target}:run:dev:{event}"]
    state.clear_requests()
    assert _run_keys(intake, 2) == []
    assert [status for _, _, status in state.requests][-1] == 304


def _bulk_edit(intake: Intake, issues: int) -> int:
    """An issue left alone, then `issues` others labelled `triage` within two minutes after the first look; the
    number of the one left alone."""
    state = intake.state
    target = state.add_issue(REPO, "Checkout fails")
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(issues)]
    intake.tick(issue_sensor)  # the first look
    state.advance(10)
    for n in numbers:
        state.label(REPO, n, "triage")
    return target


def test_a_label_after_a_bulk_edit_of_exactly_100_issues_starts_its_run(intake: Intake) -> None:
    """Exactly 100 changed: one full page and no next one. Its ETag was kept, the next change landed on page 2,
    and every later poll was answered 304."""
    target = _bulk_edit(intake, 100)
    assert _run_keys(intake, 2) == []
    intake.state.advance(30)
    event = intake.state.label(REPO, target, "run:dev", actor="alice")
    assert _run_keys(intake, 5) == [f"{REPO}#{target}:run:dev:{event}"]


def test_a_cursor_saved_stuck_by_the_previous_release_is_freed_by_the_upgrade(intake: Intake) -> None:
    """A version 2 cursor could hold page 1's ETag of a listing of several pages (the 304 freeze): it is dropped."""
    import json

    import requests

    target = _bulk_edit(intake, 120)
    intake.state.advance(60)
    event = intake.state.label(REPO, target, "run:dev", actor="alice")
    saved = json.loads(intake.cursors[issue_sensor.name] or "{}")
    repo = saved["repos"][REPO]
    for field in ("resume", "failures"):  # fields the previous release did not have
        repo.pop(field, None)
    page_one = requests.get(
        f"{intake.server.url}/repos/{REPO}/issues",
        params={"state": "all", "sort": "updated", "direction": "asc", "since": repo["since"], "per_page": 100},
        headers={"Authorization": f"token {intake.server.token}"},
        timeout=10,
    )
    repo["etag"] = page_one.headers["ETag"]
    intake.cursors[issue_sensor.name] = json.dumps({**saved, "v": 2})
    assert _run_keys(intake, 5) == [f"{REPO}#{target}:run:dev:{event}"]
