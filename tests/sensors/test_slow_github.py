"""GitHub slow or rate limited at scale: a tick still ends within Dagster's minute, and still gets somewhere.

Seen with GitHub at seconds a request: a bulk edit's listing was read whole (20 pages) before the tick's budget was
looked at, so every tick read the same pages and decided nothing, a trigger among them never started; one slow
repository held every other repository's run requests until it was done, past Dagster's 60 s, and the daemon threw
the tick away with all of them. And a rate limit, which GitHub counts per token, was counted per repository: every
other repository was asked anyway, every request refused, one sentence per repository in the skip reason.

The tick's budget is shrunk here (seconds, not 40) and pages are 10 issues, not 100, to keep each test short."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import codexk8s_pipelines.github.api as github_api
import sensors.github as sensor_module
import tests.github_server as fake_github
from codexk8s_pipelines.config import loader
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.intake import now_utc

from .conftest import REPO, Intake

BUDGET = 2.0  # the tick's budget here (40 s in the sensor)
GRACE = 1.0  # how long past it the tick waits for repositories started (10 s in the sensor)


@pytest.fixture
def short_ticks(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> Intake:
    monkeypatch.setattr(sensor_module, "TICK_BUDGET_SECONDS", BUDGET)
    monkeypatch.setattr(sensor_module, "TICK_GRACE_SECONDS", GRACE, raising=False)  # (a release without it)
    monkeypatch.setattr(github_api, "PER_PAGE", 10)
    return intake


def _watch(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repos: list[str], *, on_github: bool = True
) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(
        "repositories:\n" + "".join(f"  - github: {r}\n" for r in repos) + "triggers:\n  min_permission: write\n"
    )
    monkeypatch.setenv("CODEXK8S_CONFIG", str(path))
    loader.load_config_from_environment.cache_clear()
    for repo in repos if on_github else ():
        if repo != REPO:
            intake.state.add_repo(repo, collaborators={"alice": "write"})


def _timed_tick(intake: Intake) -> tuple[list[str], str, float]:
    started = time.monotonic()
    data = intake.tick(issue_sensor)
    return [r.run_key for r in data.run_requests], data.skip_message or "", time.monotonic() - started


def test_a_bulk_edit_on_a_slow_github_is_decided_a_part_each_tick_and_its_trigger_starts(short_ticks: Intake) -> None:
    """120 issues edited (12 pages here), alice's run:dev on the 6th; GitHub at 0.25 s a request: the whole listing
    takes longer than the tick's budget. Each tick reads what half its time allows, decides it oldest first, and
    the next tick reads on from there."""
    intake = short_ticks
    state = intake.state
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(120)]
    intake.tick(issue_sensor)  # the first look
    state.advance(10)
    event = 0
    for i, n in enumerate(numbers):  # a bulk edit over two minutes
        state.label(REPO, n, "triage")
        if i == 5:
            event = state.label(REPO, n, "run:dev", actor="alice")
        state.advance(1)
    state.latency = 0.25
    keys: list[str] = []
    took: list[float] = []
    for _ in range(3):
        started, _said, seconds = _timed_tick(intake)
        keys += started
        took.append(seconds)
    state.latency = 0.0
    assert keys == [f"{REPO}#{numbers[5]}:run:dev:{event}"], took
    assert max(took) < BUDGET + GRACE + 3.0, took  # (the rest: the sensor's own work, on a busy machine)
    repo = json.loads(intake.cursors[issue_sensor.name] or "{}")["repos"][REPO]
    assert len(repo["items"]) > 10  # the listing moves on: the items read were decided


@pytest.fixture
def slow_monorepo(short_ticks: Intake, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """acme/monorepo answers in `seconds[0]` a request (GitHub on a big repository), the others at once."""
    seconds = [0.0]
    real = fake_github.Dispatcher.handle

    def handle(self: Any, method: str, target: str, headers: Any, body: Any) -> Any:
        if "/acme/monorepo/" in target and seconds[0]:
            time.sleep(seconds[0])
        return real(self, method, target, headers, body)

    monkeypatch.setattr(fake_github.Dispatcher, "handle", handle)
    yield seconds
    seconds[0] = 0.0


def _monorepo_requests(intake: Intake) -> int:
    return sum(1 for _, path, _ in intake.state.requests if "/acme/monorepo/" in path)


def test_one_slow_repository_does_not_hold_up_the_others_run_requests(
    short_ticks: Intake, slow_monorepo: list[float], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme/monorepo at 4 s a request with a bulk edit of 30 issues (3 pages here), 4 other repositories with a
    run:dev each: the tick returns their 4 run requests at its budget plus its grace, leaves the monorepo's cursor as
    it was (its worker stops at its next request), and the monorepo's own trigger starts once GitHub is quick."""
    intake = short_ticks
    fast = [f"acme/fast{i}" for i in range(4)]
    _watch(intake, tmp_path, monkeypatch, ["acme/monorepo", *fast])
    state = intake.state
    state.add_repo("acme/monorepo", collaborators={"alice": "write"})
    bulk = [state.add_issue("acme/monorepo", f"issue {i}") for i in range(30)]
    for repo in fast:
        state.add_issue(repo, "Checkout fails")
    intake.tick(issue_sensor)
    state.advance(10)
    for n in bulk:
        state.label("acme/monorepo", n, "triage")
    mono_event = state.label("acme/monorepo", bulk[0], "run:dev", actor="alice")
    expected = {f"{repo}#1:run:dev:{state.label(repo, 1, 'run:dev', actor='alice')}" for repo in fast}
    before = json.loads(intake.cursors[issue_sensor.name] or "{}")["repos"]["acme/monorepo"]
    slow_monorepo[0] = 4.0
    state.clear_requests()

    keys, _said, took = _timed_tick(intake)

    assert set(keys) == expected
    assert took < BUDGET + GRACE + 3.0, took  # read whole, its 3 pages alone took 12 s
    after = json.loads(intake.cursors[issue_sensor.name] or "{}")["repos"]["acme/monorepo"]
    assert after == before
    time.sleep(1.5)  # its request under way comes back; the next one is not made
    asked = _monorepo_requests(intake)
    time.sleep(2.0)
    assert _monorepo_requests(intake) == asked
    assert json.loads(intake.cursors[issue_sensor.name] or "{}")["repos"]["acme/monorepo"] == before

    slow_monorepo[0] = 0.0
    later: list[str] = []
    for _ in range(3):
        later += _timed_tick(intake)[0]
    assert later == [f"acme/monorepo#{bulk[0]}:run:dev:{mono_event}"]


def test_a_rate_limit_on_the_token_holds_every_repository_until_it_lifts_and_says_so_once(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 repositories, each changed; GitHub's secondary limit on the token (403, Retry-After: 30). One refusal holds
    them all: a handful of requests refused (those already under way), then none until the time GitHub gave, next
    tick too; one line in the skip reason. Once it lifts, the label waiting starts its run."""
    repos = [f"acme/r{i:02d}" for i in range(30)]
    _watch(intake, tmp_path, monkeypatch, repos)
    state = intake.state
    for repo in repos:
        state.add_issue(repo, "Checkout fails")
    intake.tick(issue_sensor)
    state.advance(10)
    for repo in repos[1:]:
        state.label(repo, 1, "triage")
    event = state.label(repos[0], 1, "run:dev", actor="alice")
    state.inject("rate_limit_secondary", method=None, times=None)
    state.clear_requests()

    first = intake.tick(issue_sensor)

    assert first.run_requests == []
    assert len(state.requests) <= 8, len(state.requests)  # at most one per worker already under way
    said = first.skip_message or ""
    assert "GitHub secondary rate limit: backing off for" in said and "30 repositories waiting" in said, said
    assert len(said) < 300, said
    state.clear_requests()
    again = intake.tick(issue_sensor)
    assert state.requests == []  # the limit is kept in the cursor: not one request until it lifts
    assert "30 repositories waiting" in (again.skip_message or "")

    state.clear_faults()
    lifted = now_utc() + timedelta(seconds=31)
    monkeypatch.setattr(sensor_module, "now_utc", lambda: lifted)
    assert [r.run_key for r in intake.tick(issue_sensor).run_requests] == [f"{repos[0]}#1:run:dev:{event}"]


def test_the_same_failure_of_many_repositories_is_said_once_with_a_count(
    intake: Intake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 watched repositories the platform cannot read (404): one clause naming three and counting the others, not
    twenty sentences."""
    repos = [f"acme/gone{i:02d}" for i in range(20)]
    _watch(intake, tmp_path, monkeypatch, repos, on_github=False)
    said = intake.tick(issue_sensor).skip_message or ""
    assert said.count("acme/gone") == 3, said
    assert "20 repositories (acme/gone00, acme/gone01, acme/gone02 and 17 more): " in said, said
