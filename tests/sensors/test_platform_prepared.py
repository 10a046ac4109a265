"""The one way a bot starts a run: the platform's own trigger label on an issue it opened for that label."""

from __future__ import annotations

from codexk8s_pipelines.autonomous.platform_issues import open_labelled_issue
from codexk8s_pipelines.github.api import RepoApi
from sensors.github import github_issue_labels_sensor as issue_sensor
from tests.github_server import DEFAULT_TOKEN_LOGIN, pygithub_client

from .conftest import REPO, Intake


def _api(intake: Intake) -> RepoApi:
    return RepoApi(pygithub_client(intake.server), REPO)


def test_the_platforms_label_on_its_own_issue_starts_the_run(intake: Intake) -> None:
    intake.state.add_issue(REPO, "earlier")
    assert intake.tick(issue_sensor).run_requests == []  # the sensor's first look
    number = open_labelled_issue(
        _api(intake), intake.store, REPO, "self-improve", "evidence", "body", "run:self-improve"
    )
    (event,) = [e for e in intake.state.events(REPO, number) if e["event"] == "labeled"]
    assert event["actor"]["login"] == DEFAULT_TOKEN_LOGIN and event["actor"]["type"] == "Bot"
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.job_name == "stage_self_improve"
    assert request.run_key == f"{REPO}#{number}:run:self-improve:{event['id']}"


def test_other_bot_labels_stay_refused(intake: Intake) -> None:
    intake.state.add_issue(REPO, "earlier")
    intake.tick(issue_sensor)
    number = open_labelled_issue(
        _api(intake), intake.store, REPO, "self-improve", "evidence", "body", "run:self-improve"
    )
    intake.tick(issue_sensor)  # the prepared label: one run
    # The same bot putting another trigger label on the platform's issue (an agent with the platform token).
    dev = intake.state.label(REPO, number, "run:dev", actor=DEFAULT_TOKEN_LOGIN, actor_type="Bot")
    # Another bot putting the prepared label on another issue.
    other = intake.state.add_issue(REPO, "not the platform's")
    forged = intake.state.label(REPO, other, "run:self-improve", actor=DEFAULT_TOKEN_LOGIN, actor_type="Bot")
    # A different bot putting the prepared label again on the platform's issue.
    intake.state.unlabel(REPO, number, "run:self-improve", actor="alice")
    ci = intake.state.label(REPO, number, "run:self-improve", actor="ci[bot]", actor_type="Bot")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    # The platform's own account is refused as such (its agents label through it); another bot as a bot.
    for num, event_id, label, reason in ((number, dev, "run:dev", "platform_account"),
                                         (other, forged, "run:self-improve", "platform_account"),
                                         (number, ci, "run:self-improve", "actor_not_permitted")):  # fmt: skip
        events = intake.store.events(f"{REPO}#{num}:{label}:{event_id}")
        assert events[0]["event_type"] == "trigger.ignored"
        assert events[0]["payload"]["reason"] == reason
        assert "run.requested" not in [e["event_type"] for e in events]
