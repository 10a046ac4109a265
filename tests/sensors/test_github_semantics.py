"""What GitHub really sends, through real PyGithub against the fake GitHub: labels of one request, custom roles,
ETags paired with their query, bulk edits under faults, late approvals, and explain without a database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import github
import pytest

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from sensors.cursor import IntakeCursor
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor
from sensors.intake import IntakeKind, TickContext, run_tick
from tests.github_server import pygithub_client

from .conftest import REPO, Intake

CODEXK8S = Path(sys.executable).with_name("codexk8s")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _as(intake: Intake, login: str) -> github.Github:
    """PyGithub acting as a person: a token of theirs, the way a maintainer's browser session acts."""
    intake.state.add_token(f"token-{login}", login, type="User")
    return pygithub_client(intake.server, auth=github.Auth.Token(f"token-{login}"))


def _baseline(intake: Intake, title: str = "Checkout fails") -> int:
    number = intake.state.add_issue(REPO, title)
    assert intake.tick(issue_sensor).run_requests == []
    return number


def _released_after_dev(intake: Intake) -> tuple[int, int]:
    """An issue with a dev run behind it, and `run:release` asked for by alice (write): approval needed."""
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:dev", actor="alice")
    (dev,) = intake.tick(issue_sensor).run_requests
    intake.store.set_run_status(dev.run_key, "succeeded")  # only a dev run that succeeded lets release run
    intake.state.unlabel(REPO, number, "run:dev", actor="alice")
    event = intake.state.label(REPO, number, "run:release", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    assert "Waiting for approval" in intake.state.comments(REPO, number)[-1]["body"]
    return number, event


# -- 1. labels of one request are applied together, then decided once ---------------------------------------
def test_two_trigger_labels_in_one_request_start_nothing(intake: Intake) -> None:
    number = _baseline(intake)
    _as(intake, "alice").get_repo(REPO).get_issue(number).add_to_labels("run:dev", "run:qa")
    events = intake.state.events(REPO, number)
    assert len({e["created_at"] for e in events}) == 1  # one request, one second, as on GitHub
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.tick(issue_sensor).run_requests == []
    (comment,) = intake.state.comments(REPO, number)
    assert "Conflicting labels" in comment["body"] and "`run:dev`, `run:qa`" in comment["body"]
    key = f"{REPO}#{number}:run:dev:{events[0]['id']}"
    assert intake.events(key) == ["trigger.conflict", "comment.posted"]
    with intake.store.connect() as conn:
        assert conn.execute("SELECT count(*) AS n FROM runs").fetchone()["n"] == 0


def test_a_model_label_in_the_same_request_reaches_the_run(intake: Intake) -> None:
    number = _baseline(intake)
    _as(intake, "alice").get_repo(REPO).get_issue(number).add_to_labels("run:dev", "[ai-model-gpt-5.2]")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_config["ops"]["prepare_context"]["config"]["model"] == "gpt-5.2"


def test_an_issue_opened_with_its_labels_runs_once_with_them(intake: Intake) -> None:
    _baseline(intake)
    issue = (
        _as(intake, "alice")
        .get_repo(REPO)
        .create_issue("Refund button", body="", labels=["[ai-reasoning-low]", "run:dev", "[ai-model-gpt-5.2]"])
    )
    (request,) = intake.tick(issue_sensor).run_requests
    config = request.run_config["ops"]["prepare_context"]["config"]
    assert (config["issue_number"], config["model"], config["reasoning"]) == (issue.number, "gpt-5.2", "low")
    assert intake.tick(issue_sensor).run_requests == []


# -- 2. custom repository roles -------------------------------------------------------------------------------
def test_a_custom_role_built_on_write_may_trigger(intake: Intake) -> None:
    intake.state.add_custom_role(REPO, "release-captain", "write")
    intake.state.set_permission(REPO, "frank", "release-captain")
    number = _baseline(intake)
    answer = _as(intake, "alice").get_repo(REPO).get_collaborator_role_name("frank")
    assert answer == "release-captain"  # what GitHub says: the custom role's name, not a base role
    intake.state.label(REPO, number, "run:dev", actor="frank")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.tags["codexk8s/actor"] == "frank"
    audit = intake.store.events(request.run_key)[0]
    assert audit["payload"]["permission"] == "write"


def test_a_custom_role_built_on_maintain_may_approve(intake: Intake) -> None:
    intake.state.add_custom_role(REPO, "release-manager", "maintain")
    intake.state.set_permission(REPO, "gina", "release-manager")
    number, event = _released_after_dev(intake)  # alice (write) asks, a maintainer approves
    intake.state.label(REPO, number, "state:approved", actor="gina")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == f"{REPO}#{number}:run:release:{event}"
    assert request.job_name == "stage_release"


# -- 3. the ETag stays paired with its query -----------------------------------------------------------------
def test_the_first_idle_tick_after_a_change_is_a_free_304(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.add_issue(REPO, "Another one")  # listed since the first look, but not at the newest change
    intake.state.label(REPO, number, "run:dev", actor="alice")
    assert len(intake.tick(issue_sensor).run_requests) == 1
    before = intake.state.rate_limit_remaining
    intake.state.clear_requests()
    assert intake.tick(issue_sensor).run_requests == []
    assert [status for _, _, status in intake.state.requests] == [304]
    assert intake.state.rate_limit_remaining == before


def test_a_review_in_the_second_the_pr_was_read_is_still_decided(intake: Intake) -> None:
    pr = intake.state.add_pull(REPO, "Fix checkout", labels=("run:dev",))
    assert intake.tick(pr_sensor).run_requests == []
    with intake.state.same_moment():  # GitHub's clock stays in one second while it is read and reviewed
        intake.state.label(REPO, pr, "bug", actor="alice")
        assert intake.tick(pr_sensor).run_requests == []
        review = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review}"
    intake.state.clear_requests()
    assert intake.tick(pr_sensor).run_requests == []
    assert [status for _, _, status in intake.state.requests] == [304]


# -- 4. a bulk edit under faults makes progress item by item -------------------------------------------------
@pytest.mark.timeout(300)
def test_a_bulk_edit_of_106_issues_gets_through_20_percent_faults(intake: Intake) -> None:
    rules = load_config_from_environment().rules()
    state = intake.state
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(106)]
    credentials = GitHubCredentials(api_url=intake.server.url, token=intake.server.token, timeout_seconds=1)
    state.timeout_seconds = 1.5
    clock = [datetime.now(UTC)]
    cursor = IntakeCursor()

    def tick() -> list[str]:
        connector = GitHubConnector(credentials)
        ctx = TickContext(rules=rules, store=intake.store, now=clock[0])
        api_for = lambda name: RepoApi(connector.for_repository(name), name)  # noqa: E731
        outcome = run_tick(IntakeKind.ISSUE_LABELS, [REPO], api_for, cursor, ctx)
        clock[0] += timedelta(seconds=61)  # past any backoff
        return [i.correlation_key for i in outcome.intents]

    tick()
    with state.same_moment():  # one bulk edit: 106 issues changed in the same second
        expected = {f"{REPO}#{n}:run:plan:{state.label(REPO, n, 'run:plan', actor='alice')}" for n in numbers}
    state.fail_rate(0.2, seed=11)
    launched: list[str] = []
    ticks = 0
    while ticks < 40 and set(launched) != expected:
        launched += tick()
        ticks += 1
    state.clear_faults()
    assert set(launched) == expected, f"{len(set(launched))} of 106 after {ticks} ticks"
    assert len(launched) == len(expected)  # none twice
    assert sum(1 for r in state.requests if r[2] >= 400 or r[2] == 0) > 10  # the faults really happened


@pytest.mark.timeout(300)
def test_a_bulk_edit_too_big_for_one_tick_is_decided_over_several_within_the_budget(intake: Intake) -> None:
    """60 issues labelled in one second, GitHub answering in 50 ms: deciding them takes longer than the tick's budget
    (1 s here, 40 s in the sensor). No tick may run much past it, since the daemon discards a tick that overruns
    (with its cursor) and the next would repeat the same work forever; each tick decides what fits and leaves the
    rest, oldest change first, for the next."""
    rules = load_config_from_environment().rules()
    state = intake.state
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(60)]
    credentials = GitHubCredentials(api_url=intake.server.url, token=intake.server.token)
    clock = [datetime.now(UTC)]
    cursor = IntakeCursor()
    budget = 1.0

    def tick() -> tuple[list[str], float, list[str]]:
        connector = GitHubConnector(credentials)
        ctx = TickContext(rules=rules, store=intake.store, now=clock[0])
        api_for = lambda name: RepoApi(connector.for_repository(name), name)  # noqa: E731
        started = time.monotonic()
        outcome = run_tick(IntakeKind.ISSUE_LABELS, [REPO], api_for, cursor, ctx, budget_seconds=budget)
        clock[0] += timedelta(seconds=31)
        return [i.correlation_key for i in outcome.intents], time.monotonic() - started, outcome.notes

    tick()
    with state.same_moment():
        expected = {f"{REPO}#{n}:run:plan:{state.label(REPO, n, 'run:plan', actor='alice')}" for n in numbers}
    state.latency = 0.05
    launched: list[str] = []
    took: list[float] = []
    notes: list[str] = []
    while len(took) < 30 and set(launched) != expected:
        keys, seconds, said = tick()
        launched += keys
        took.append(seconds)
        notes += said
    state.latency = 0.0
    assert set(launched) == expected, f"{len(set(launched))} of 60 after {len(took)} ticks"
    assert len(launched) == len(expected)  # none twice
    assert len(took) > 1  # it did not fit in one tick: the budget is what this is about
    assert max(took) < budget + 1.0, took  # one item's requests past the budget at most
    assert any(f"{REPO}: " in n and "changed items left for the next tick" in n for n in notes), notes


# -- 5. a late approval is answered, once ------------------------------------------------------------------
def test_an_approval_after_the_ttl_tells_the_approver_once(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    number, _ = _released_after_dev(intake)
    assert len(intake.state.comments(REPO, number)) == 1  # waiting for approval
    later = datetime.now(UTC) + timedelta(hours=2)  # the release approval lives 1 h
    monkeypatch.setattr("sensors.github.now_utc", lambda: later)
    assert intake.tick(issue_sensor).run_requests == []  # the sweep expires it: nobody to tell yet
    intake.state.label(REPO, number, "state:approved", actor="bob")
    assert intake.tick(issue_sensor).run_requests == []
    comments = intake.state.comments(REPO, number)
    assert len(comments) == 2
    assert "older than 1 h" in comments[1]["body"] and "add run:release again" in comments[1]["body"]
    intake.state.unlabel(REPO, number, "state:approved", actor="bob")
    intake.state.label(REPO, number, "state:approved", actor="bob")
    assert intake.tick(issue_sensor).run_requests == []
    assert len(intake.state.comments(REPO, number)) == 2  # told once


# -- 6. explain without a database, and blame where it belongs ----------------------------------------------
def _explain(target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CODEXK8S), "triggers", "explain", target, "--json"], cwd=REPO_ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_explain_without_a_database_decides_a_bots_label(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Bot labelled")
    intake.state.label(REPO, number, "run:dev", actor="ci[bot]", actor_type="Bot")
    result = _explain(f"{REPO}#{number}", {"CODEXK8S_DATABASE_URL": ""})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["kind"], data["reason"]) == ("ignored", "actor_not_permitted")
    assert any("platform database not reachable" in n for n in data["notes"])


def test_explain_does_not_blame_github_for_its_own_failure(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Bot labelled")
    intake.state.label(REPO, number, "run:dev", actor="ci[bot]", actor_type="Bot")
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"
    result = _explain(f"{REPO}#{number}", {"CODEXK8S_DATABASE_URL": unreachable})
    assert result.returncode == 1
    assert "GitHub answered" not in result.stderr and "OperationalError" in result.stderr
    assert "Traceback" not in result.stderr
