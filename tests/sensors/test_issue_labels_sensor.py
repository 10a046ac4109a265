"""Issue labels become exactly one run each, or a clear word why not — through real PyGithub and the database."""

from __future__ import annotations

import json
import re

import pytest

from sensors.github import github_issue_labels_sensor as issue_sensor

from .conftest import REPO, Intake


def _baseline(intake: Intake) -> int:
    """An issue exists and the sensor has taken its first look: labels from now on are new."""
    number = intake.state.add_issue(REPO, "Checkout fails on empty cart")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    return number


def test_without_credentials_the_sensor_skips_and_says_why(intake: Intake, monkeypatch) -> None:
    monkeypatch.delenv("CODEXK8S_GITHUB_TOKEN")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    assert "no GitHub credentials: set CODEXK8S_GITHUB_TOKEN" in (data.skip_message or "")
    assert intake.state.requests == []


def _dev_run_succeeded(intake: Intake, number: int) -> None:
    """A run:dev run of the issue that succeeded: what qa and release need before them."""
    intake.state.label(REPO, number, "run:dev")
    (dev,) = intake.tick(issue_sensor).run_requests
    intake.store.set_run_status(dev.run_key, "succeeded")
    intake.state.unlabel(REPO, number, "run:dev")


def test_a_trigger_label_starts_exactly_one_run(intake: Intake) -> None:
    number = _baseline(intake)
    event_id = intake.state.label(REPO, number, "run:dev", actor="alice")
    data = intake.tick(issue_sensor)
    (request,) = data.run_requests
    key = f"{REPO}#{number}:run:dev:{event_id}"
    assert request.run_key == key
    assert request.job_name == "stage_dev"
    assert request.tags["codexk8s/stage"] == "dev" and request.tags["codexk8s/actor"] == "alice"
    assert request.tags["codexk8s/issue"] == f"{REPO}#{number}" and request.tags["codexk8s/role"] == "dev"
    config = request.run_config["ops"]["prepare_context"]["config"]
    assert (config["repository"], config["issue_number"], config["stage"], config["model"]) == (
        REPO, number, "dev", "gpt-5.4",
    )  # fmt: skip
    assert "test-token" not in json.dumps(request.run_config) + json.dumps(request.tags)
    assert intake.store.get_run(key)["status"] == "requested"  # type: ignore[index]
    assert intake.events(key) == ["run.requested"]
    # The next ticks see nothing new and launch nothing again.
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.tick(issue_sensor).run_requests == []


def test_an_idle_repository_costs_a_free_304(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "bug")
    intake.tick(issue_sensor)  # reads the change once
    intake.tick(issue_sensor)  # the boundary item is listed once more, then the ETag holds
    before = intake.state.rate_limit_remaining
    intake.state.clear_requests()
    for _ in range(3):
        assert intake.tick(issue_sensor).run_requests == []
    assert [status for _, _, status in intake.state.requests] == [304, 304, 304]
    assert intake.state.rate_limit_remaining == before


def test_a_re_added_label_is_a_new_event_and_a_new_run(intake: Intake) -> None:
    number = _baseline(intake)
    first = intake.state.label(REPO, number, "run:plan")
    intake.state.unlabel(REPO, number, "run:plan")
    second = intake.state.label(REPO, number, "run:plan")
    keys = [r.run_key for r in intake.tick(issue_sensor).run_requests]
    assert keys == [f"{REPO}#{number}:run:plan:{first}", f"{REPO}#{number}:run:plan:{second}"]


def test_two_trigger_labels_conflict_with_one_comment(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:dev")
    intake.tick(issue_sensor)
    event_id = intake.state.label(REPO, number, "run:qa", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    intake.tick(issue_sensor)
    comments = intake.state.comments(REPO, number)
    assert len(comments) == 1
    assert "Conflicting labels" in comments[0]["body"] and "`run:dev`, `run:qa`" in comments[0]["body"]
    key = f"{REPO}#{number}:run:qa:{event_id}"
    assert intake.events(key) == ["trigger.conflict", "comment.posted"]


def test_conflicting_model_labels(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "[ai-model-gpt-5.2]")
    intake.state.label(REPO, number, "[ai-model-gpt-5.4]")
    intake.state.label(REPO, number, "run:dev")
    assert intake.tick(issue_sensor).run_requests == []
    (comment,) = intake.state.comments(REPO, number)
    assert "multiple_model_labels" in comment["body"]


def test_model_and_reasoning_labels_reach_the_run(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "[AI-Model-GPT-5.2]")
    intake.state.label(REPO, number, "[ai-reasoning-low]")
    intake.state.label(REPO, number, " run:dev ")
    (request,) = intake.tick(issue_sensor).run_requests
    config = request.run_config["ops"]["prepare_context"]["config"]
    assert (config["model"], config["reasoning"]) == ("gpt-5.2", "low")


def test_unauthorised_user_bot_and_app_cannot_trigger(intake: Intake) -> None:
    number = _baseline(intake)
    carol = intake.state.label(REPO, number, "run:dev", actor="carol")
    intake.state.unlabel(REPO, number, "run:dev", actor="carol")
    bot = intake.state.label(REPO, number, "run:dev", actor="ci[bot]", actor_type="Bot")
    intake.state.unlabel(REPO, number, "run:dev", actor="ci[bot]", actor_type="Bot")
    app = intake.state.label(REPO, number, "run:dev", actor="deployer", actor_type="App")
    intake.state.clear_requests()
    assert intake.tick(issue_sensor).run_requests == []
    for event_id in (carol, bot, app):
        (audit,) = intake.store.events(f"{REPO}#{number}:run:dev:{event_id}")[:1]
        assert audit["event_type"] == "trigger.ignored" and audit["payload"]["reason"] == "actor_not_permitted"
    # Only the human's permission was looked up; bots and apps are refused without asking GitHub.
    permission_calls = [p for _, p, _ in intake.state.requests if "/permission" in p]
    assert permission_calls == [f"/repos/{REPO}/collaborators/carol/permission"]
    bodies = [c["body"] for c in intake.state.comments(REPO, number)]
    assert len(bodies) == 3 and all("actor_not_permitted" in b for b in bodies)
    assert "carol has read permission" in bodies[0]


def test_the_allow_list_lets_a_reader_trigger(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:intake", actor="dana")  # no permission at all, but allow-listed
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.job_name == "stage_intake"


def test_qa_without_dev_asks_for_input_and_runs_after_dev(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:qa")
    assert intake.tick(issue_sensor).run_requests == []
    assert "need:input" in intake.state.labels(REPO, number)
    assert "dev_run_missing" in intake.state.comments(REPO, number)[0]["body"]
    intake.state.unlabel(REPO, number, "run:qa")
    intake.state.label(REPO, number, "run:dev")
    (dev,) = intake.tick(issue_sensor).run_requests
    assert dev.job_name == "stage_dev"
    intake.state.unlabel(REPO, number, "run:dev")
    intake.state.label(REPO, number, "run:qa")
    assert intake.tick(issue_sensor).run_requests == []  # the dev run has not succeeded (yet)
    intake.state.unlabel(REPO, number, "run:qa")
    intake.store.set_run_status(dev.run_key, "succeeded")
    intake.state.label(REPO, number, "run:qa")
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_qa"]


def test_a_discussions_dev_run_is_not_the_dev_run_qa_needs(intake: Intake) -> None:
    """A dev run under `mode:discussion` only commented: it succeeds, yet it left nothing for qa to check. Once
    the discussion is over, a dev run that writes makes qa possible."""
    number = _baseline(intake)
    intake.state.label(REPO, number, "mode:discussion", actor="alice")
    intake.state.label(REPO, number, "run:dev")
    (talk,) = intake.tick(issue_sensor).run_requests
    assert talk.tags["codexk8s/mode"] == "discussion"
    intake.store.set_run_status(talk.run_key, "succeeded")
    intake.state.unlabel(REPO, number, "run:dev")
    intake.state.unlabel(REPO, number, "mode:discussion")
    intake.state.label(REPO, number, "run:qa")
    assert intake.tick(issue_sensor).run_requests == []
    assert "dev_run_missing" in intake.state.comments(REPO, number)[-1]["body"]
    intake.state.unlabel(REPO, number, "run:qa")
    _dev_run_succeeded(intake, number)
    intake.state.label(REPO, number, "run:qa")
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_qa"]


def test_revise_by_label(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:design:revise")
    (request,) = intake.tick(issue_sensor).run_requests
    config = request.run_config["ops"]["prepare_context"]["config"]
    assert (request.job_name, config["revise"], request.tags["codexk8s/stage"]) == (
        "stage_design", True, "design:revise",
    )  # fmt: skip


def test_approval_granted_by_an_approver_completes_the_same_key(intake: Intake) -> None:
    number = _baseline(intake)
    _dev_run_succeeded(intake, number)
    release = intake.state.label(REPO, number, "run:release", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    key = f"{REPO}#{number}:run:release:{release}"
    assert intake.store.get_approval(key)["status"] == "requested"  # type: ignore[index]
    assert "Waiting for approval" in intake.state.comments(REPO, number)[-1]["body"]
    assert "maintain" in intake.state.comments(REPO, number)[-1]["body"]

    wrong = intake.state.label(REPO, number, "state:approved", actor="erin")  # write, not maintain
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.store.get_approval(key)["status"] == "requested"  # type: ignore[index]
    assert "approver_not_permitted" in intake.state.comments(REPO, number)[-1]["body"]
    intake.state.unlabel(REPO, number, "state:approved", actor="erin")
    assert intake.events(f"{REPO}#{number}:state:approved:{wrong}")[0] == "trigger.ignored"

    intake.state.label(REPO, number, "state:approved", actor="bob")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key and request.job_name == "stage_release"
    approval = intake.store.get_approval(key)
    assert approval["status"] == "applied" and approval["approver"] == "bob"  # type: ignore[index]
    assert intake.events(key) == [
        "approval.requested", "comment.posted", "approval.denied", "approval.approved", "run.requested",
        "approval.applied",
    ]  # fmt: skip


def test_an_approver_labelling_runs_directly(intake: Intake) -> None:
    number = _baseline(intake)
    _dev_run_succeeded(intake, number)
    intake.state.label(REPO, number, "run:release", actor="bob")
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_release"]


def test_an_expired_approval_does_not_run(intake: Intake) -> None:
    from datetime import timedelta

    number = _baseline(intake)
    _dev_run_succeeded(intake, number)
    release = intake.state.label(REPO, number, "run:release", actor="alice")
    intake.tick(issue_sensor)
    key = f"{REPO}#{number}:run:release:{release}"
    with intake.store.connect() as conn:  # the request was made two hours ago (TTL is 1 h)
        conn.execute(
            "UPDATE approvals SET requested_at = requested_at - %s, expires_at = expires_at - %s"
            " WHERE correlation_key = %s",
            (timedelta(hours=2), timedelta(hours=2), key),
        )
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.store.get_approval(key)["status"] == "expired"  # type: ignore[index]
    assert "approval.expired" in intake.events(key)
    intake.state.label(REPO, number, "state:approved", actor="bob")
    assert intake.tick(issue_sensor).run_requests == []


def test_primary_rate_limit_backs_off_until_reset_and_loses_nothing(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:dev")
    intake.state.inject("rate_limit_primary", path_regex=r".*/issues$")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    assert "GitHub primary rate limit: backing off" in (data.skip_message or "")
    intake.state.clear_requests()
    again = intake.tick(issue_sensor)
    assert intake.state.requests == []  # no request at all while backing off
    assert "backing off" in (again.skip_message or "")


def test_secondary_rate_limit_uses_retry_after(intake: Intake) -> None:
    _baseline(intake)
    intake.state.label(REPO, 1, "run:dev")
    intake.state.inject("rate_limit_secondary", path_regex=r".*/issues$")
    data = intake.tick(issue_sensor)
    assert "GitHub secondary rate limit: backing off for 30 s" in (data.skip_message or "") or (
        "backing off for 29 s" in (data.skip_message or "")
    )


def test_a_server_error_mid_tick_is_retried_next_tick_without_duplicates(intake: Intake) -> None:
    first = _baseline(intake)
    second = intake.state.add_issue(REPO, "Second")
    intake.state.label(REPO, first, "run:dev")
    intake.state.label(REPO, second, "run:plan")
    # Every attempt at the second issue's events fails in this tick (PyGithub's retries included).
    intake.state.inject("500", path_regex=rf".*/issues/{second}/events.*", times=3)
    data = intake.tick(issue_sensor)
    assert [r.job_name for r in data.run_requests] == ["stage_dev"]
    data = intake.tick(issue_sensor)
    assert [r.job_name for r in data.run_requests] == ["stage_plan"]
    assert intake.tick(issue_sensor).run_requests == []


def _item_failures(intake: Intake) -> list[tuple[str, str]]:
    with intake.store.connect() as conn:
        rows = conn.execute(
            "SELECT correlation_key, payload FROM flow_events WHERE event_type = 'intake.item_failed' ORDER BY id"
        ).fetchall()
    return [(row["correlation_key"], row["payload"]["error"]) for row in rows]


@pytest.mark.parametrize("answer", ["issues/{number}/events", "collaborators/erin/permission"])
def test_an_answer_nested_too_deeply_is_audited_by_name_and_the_tick_goes_on(intake: Intake, answer: str) -> None:
    """GitHub's answer for one issue's events (read by the platform) or its labeller's permission (read by PyGithub)
    is `[` 200,000 times: json's decoder raised RecursionError, audited as "maximum recursion depth exceeded" with
    nothing to say what was being read. Now the audit row names the request and why, and the other issue's run
    starts in the same tick."""
    first = _baseline(intake)
    second = intake.state.add_issue(REPO, "Second")
    intake.state.label(REPO, first, "run:dev")
    intake.state.label(REPO, second, "run:plan", actor="erin")
    path = f"/repos/{REPO}/" + answer.format(number=second)
    intake.state.inject("deep_json", path_regex=re.escape(path) + "$")
    data = intake.tick(issue_sensor)
    assert [r.job_name for r in data.run_requests] == ["stage_dev"]
    [(key, error)] = _item_failures(intake)
    assert key.startswith(f"{REPO}#{second}:intake:")
    why = "is not JSON the platform can read: nested too deeply"
    assert error == f"UntrustedDataError: GitHub's answer to GET {path} {why}"


def test_an_error_answer_nested_too_deeply_is_still_a_server_error_retried_next_tick(intake: Intake) -> None:
    """A 502 whose body is `[` 200,000 times: reading GitHub's message out of it raised RecursionError instead of
    the 502, so the tick took a passing server error for a permanent one and the issue's trigger was lost."""
    first = _baseline(intake)
    intake.state.label(REPO, first, "run:dev")
    intake.state.inject("deep_json_502", path_regex=rf".*/issues/{first}/events$", times=3)  # retries included
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    assert f"{REPO}#{first}: GithubException; retried next tick" in (data.skip_message or "")
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_dev"]
    assert _item_failures(intake) == []


def test_a_listing_nested_too_deeply_is_named_in_the_tick_and_read_again(intake: Intake) -> None:
    number = _baseline(intake)
    intake.state.label(REPO, number, "run:dev")
    intake.state.inject("deep_json", path_regex=r".*/issues$")
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    assert (
        f"{REPO}: UntrustedDataError: GitHub's answer to GET /repos/{REPO}/issues is not JSON the platform can read: "
        "nested too deeply; retried next tick"
    ) in (data.skip_message or "")
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_dev"]


def test_a_corrupt_cursor_restarts_from_now_instead_of_failing(intake: Intake) -> None:
    number = _baseline(intake)
    intake.cursors[issue_sensor.name] = "{not json"
    data = intake.tick(issue_sensor)
    assert data.run_requests == []
    intake.state.label(REPO, number, "run:dev")
    assert len(intake.tick(issue_sensor).run_requests) == 1
