"""Approvals through the real sensors: a revise a review asked for is approved on its PR (or its issue) and revises
the PR's branch; a trigger label taken off before its approval is withdrawn; only a dev run that succeeded lets qa
and release run."""

from __future__ import annotations

from typing import Any

import dagster as dg

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.github.client import GitHubConnector, GitHubCredentials
from codexk8s_pipelines.github.payloads import IssueEvent
from sensors.decide import TickContext, approval_decision
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor
from sensors.intake import apply, now_utc

from .conftest import REPO, Intake


def _config(request: dg.RunRequest) -> dict[str, Any]:
    return request.run_config["ops"]["prepare_context"]["config"]


def _approvals(intake: Intake) -> list[dict[str, Any]]:
    with intake.store.connect() as conn:
        return conn.execute("SELECT * FROM approvals ORDER BY id").fetchall()


def _revise_waiting(intake: Intake, linked: bool = True) -> tuple[int | None, int, str]:
    """A PR on the release stage (its label), alice (write) asks for changes: the revise waits for a maintainer.
    Returns the linked issue (None without one), the PR and the waiting run's key."""
    issue = None
    if linked:
        issue = intake.state.add_issue(REPO, "Release 2.0")
        assert intake.tick(issue_sensor).run_requests == []  # the first look
    pr = intake.state.add_pull(REPO, "Release notes", labels=("run:release",), linked_issue=issue, head="release-notes")
    assert intake.tick(pr_sensor).run_requests == []  # the first look
    if not linked:
        assert intake.tick(issue_sensor).run_requests == []
    review = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="alice")
    assert intake.tick(pr_sensor).run_requests == []
    key = f"{REPO}#{pr}:run:release:revise:review-{review}"
    assert "Waiting for approval" in intake.state.comments(REPO, pr)[-1]["body"]  # asked for on the PR
    (row,) = _approvals(intake)
    assert (row["correlation_key"], row["issue_number"], row["status"]) == (key, issue, "requested")
    return issue, pr, key


# -- defect 1: a review's revise is approved where it was asked for, and revises the PR --------------------------
def test_state_approved_on_the_pr_approves_the_revise_a_review_asked_for(intake: Intake) -> None:
    issue, pr, key = _revise_waiting(intake)
    intake.state.label(REPO, pr, "state:approved", actor="bob")  # maintain: an approver, where the comment is
    (request,) = intake.tick(pr_sensor).run_requests
    assert (request.run_key, request.job_name) == (key, "stage_release")
    config = _config(request)
    assert (config["issue_number"], config["pr_number"], config["revise"]) == (issue, pr, True)
    (row,) = _approvals(intake)
    assert (row["status"], row["approver"], row["pr_number"]) == ("applied", "bob", pr)  # the PR it was asked on
    assert intake.events(key) == [
        "approval.requested", "comment.posted", "approval.approved", "run.requested", "approval.applied",
    ]  # fmt: skip
    run = intake.store.get_run(key)
    assert run is not None and (run["issue_number"], run["pr_number"]) == (issue, pr)
    # One run per approval: the same label on the issue afterwards, and the next ticks, start nothing more.
    assert issue is not None
    intake.state.label(REPO, issue, "state:approved", actor="bob")
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.tick(pr_sensor).run_requests == []


def test_state_approved_on_the_linked_issue_revises_the_prs_branch(intake: Intake) -> None:
    issue, pr, key = _revise_waiting(intake)
    assert issue is not None
    intake.state.unlabel(REPO, pr, "run:release", actor="alice")  # the review is the trigger, not a label
    intake.state.label(REPO, issue, "state:approved", actor="bob")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key
    config = _config(request)
    assert (config["issue_number"], config["pr_number"], config["revise"]) == (issue, pr, True)
    assert intake.tick(pr_sensor).run_requests == []


def test_a_revise_on_a_pr_without_an_issue_can_be_approved(intake: Intake) -> None:
    _, pr, key = _revise_waiting(intake, linked=False)
    intake.state.label(REPO, pr, "state:approved", actor="erin")  # write: not a release approver
    assert intake.tick(pr_sensor).run_requests == []
    assert "approver_not_permitted" in intake.state.comments(REPO, pr)[-1]["body"]
    assert _approvals(intake)[0]["status"] == "requested"
    intake.state.unlabel(REPO, pr, "state:approved", actor="erin")
    intake.state.label(REPO, pr, "state:approved", actor="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == key
    config = _config(request)
    assert (config["issue_number"], config["pr_number"], config["revise"]) == (None, pr, True)
    assert _approvals(intake)[0]["status"] == "applied"


def test_state_approved_on_a_pr_without_a_waiting_run_does_nothing(intake: Intake) -> None:
    pr = intake.state.add_pull(REPO, "Docs", head="docs")
    assert intake.tick(pr_sensor).run_requests == []
    intake.state.label(REPO, pr, "state:approved", actor="bob")
    assert intake.tick(pr_sensor).run_requests == []
    assert intake.state.comments(REPO, pr) == []


def test_approved_on_the_pr_and_on_the_issue_at_once_starts_one_run(intake: Intake) -> None:
    """Both approvals decided while the request still waits (the two sensors tick apart), then acted on: the one
    that takes the approval starts the run, the other starts nothing."""
    issue, pr, key = _revise_waiting(intake)
    assert issue is not None
    on_pr = intake.state.label(REPO, pr, "state:approved", actor="bob")
    on_issue = intake.state.label(REPO, issue, "state:approved", actor="bob")
    credentials = GitHubCredentials(api_url=intake.server.url, token=intake.server.token)
    api = RepoApi(GitHubConnector(credentials).for_repository(REPO), REPO)
    ctx = TickContext(rules=load_config_from_environment().rules(), store=intake.store, now=now_utc())

    def event(number: int, event_id: int) -> IssueEvent:
        (raw,) = [e for e in intake.state.events(REPO, number) if e["id"] == event_id]
        return IssueEvent.parse(raw)

    decided = [
        approval_decision(api, ctx, pr, event(pr, on_pr), tuple(intake.state.labels(REPO, pr))),
        approval_decision(api, ctx, issue, event(issue, on_issue), tuple(intake.state.labels(REPO, issue))),
    ]
    assert all(d is not None and d.key == key for d in decided)
    intents = [apply(api, ctx, d) for d in decided if d is not None]
    assert [i.correlation_key for i in intents if i is not None] == [key]
    assert intake.events(key).count("approval.approved") == 1


# -- defect 2: a trigger label taken off before its approval is withdrawn ---------------------------------------
def _dev_run_succeeded(intake: Intake, number: int) -> None:
    intake.state.label(REPO, number, "run:dev", actor="bob")
    (dev,) = intake.tick(issue_sensor).run_requests
    intake.store.set_run_status(dev.run_key, "succeeded")
    intake.state.unlabel(REPO, number, "run:dev", actor="bob")


def test_an_approval_after_the_trigger_was_taken_off_starts_nothing(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Release")
    assert intake.tick(issue_sensor).run_requests == []
    _dev_run_succeeded(intake, number)
    release = intake.state.label(REPO, number, "run:release", actor="alice")  # write: needs a maintainer
    assert intake.tick(issue_sensor).run_requests == []
    key = f"{REPO}#{number}:run:release:{release}"
    intake.state.unlabel(REPO, number, "run:release", actor="alice")  # alice withdraws the request
    assert intake.tick(issue_sensor).run_requests == []

    approved = intake.state.label(REPO, number, "state:approved", actor="bob")
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.store.get_run(key) is None
    assert intake.store.get_approval(key)["status"] == "withdrawn"  # type: ignore[index]
    assert intake.events(key) == ["approval.requested", "comment.posted", "approval.withdrawn"]
    refusal = f"{REPO}#{number}:state:approved:{approved}"
    (audit, *_) = intake.store.events(refusal)
    assert (audit["event_type"], audit["payload"]["reason"]) == ("trigger.ignored", "approval_withdrawn")
    body = intake.state.comments(REPO, number)[-1]["body"]
    assert "approval_withdrawn" in body and "add run:release again" in body
    assert intake.tick(issue_sensor).run_requests == []  # told once

    # Asked for again, it waits for its own approval and runs under its own key.
    intake.state.unlabel(REPO, number, "state:approved", actor="bob")
    again = intake.state.label(REPO, number, "run:release", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    intake.state.label(REPO, number, "state:approved", actor="bob")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == f"{REPO}#{number}:run:release:{again}"


def test_an_approval_with_the_trigger_still_there_runs(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Release")
    assert intake.tick(issue_sensor).run_requests == []
    _dev_run_succeeded(intake, number)
    release = intake.state.label(REPO, number, "run:release", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    intake.state.label(REPO, number, "state:approved", actor="bob")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == f"{REPO}#{number}:run:release:{release}"
    assert (_config(request)["issue_number"], _config(request)["pr_number"]) == (number, None)


def test_an_approved_discussion_stays_a_discussion(intake: Intake) -> None:
    """The approval's run was decided afresh without the issue's `mode:discussion`: a release discussion, once
    approved, would have run as the release itself."""
    number = intake.state.add_issue(REPO, "Release")
    assert intake.tick(issue_sensor).run_requests == []
    _dev_run_succeeded(intake, number)
    intake.state.label(REPO, number, "mode:discussion", actor="alice")
    intake.state.label(REPO, number, "run:release", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    intake.state.label(REPO, number, "state:approved", actor="bob")
    (request,) = intake.tick(issue_sensor).run_requests
    assert _config(request)["discussion"] is True
    assert request.tags["codexk8s/mode"] == "discussion"


# -- defect 3: only a dev run that succeeded is an earlier dev run ----------------------------------------------
def test_only_a_succeeded_dev_run_lets_qa_run(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Checkout")
    assert intake.tick(issue_sensor).run_requests == []
    intake.state.label(REPO, number, "run:dev", actor="alice")
    (dev,) = intake.tick(issue_sensor).run_requests
    intake.state.unlabel(REPO, number, "run:dev", actor="alice")

    for status in ("failed", "canceled", "running"):
        intake.store.set_run_status(dev.run_key, status)
        qa = intake.state.label(REPO, number, "run:qa", actor="alice")
        assert intake.tick(issue_sensor).run_requests == [], status
        (audit, *_) = intake.store.events(f"{REPO}#{number}:run:qa:{qa}")
        assert audit["payload"]["reason"] == "dev_run_missing", status
        intake.state.unlabel(REPO, number, "run:qa", actor="alice")
    assert "dev_run_missing" in intake.state.comments(REPO, number)[-1]["body"]

    intake.store.set_run_status(dev.run_key, "succeeded")
    qa = intake.state.label(REPO, number, "run:qa", actor="alice")
    (request,) = intake.tick(issue_sensor).run_requests
    assert (request.run_key, request.job_name) == (f"{REPO}#{number}:run:qa:{qa}", "stage_qa")
