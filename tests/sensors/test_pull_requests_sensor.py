"""PR labels and reviews: need:reviewer starts a reviewer run; changes requested revises the PR's one stage."""

from __future__ import annotations

from datetime import datetime

from codexk8s_pipelines.github.api import RepoApi, Window
from codexk8s_pipelines.store.database import RunRecord
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor

from .conftest import REPO, Intake


def _pull(
    intake: Intake, labels: tuple[str, ...] = (), linked_issue: int | None = None, head: str = "feature/x"
) -> int:
    number = intake.state.add_pull(REPO, "Fix checkout", labels=labels, linked_issue=linked_issue, head=head)
    assert intake.tick(pr_sensor).run_requests == []  # the sensor's first look
    return number


def _config(request) -> dict:
    return request.run_config["ops"]["prepare_context"]["config"]


def test_need_reviewer_starts_a_comment_only_reviewer_run(intake: Intake) -> None:
    pr = _pull(intake)
    event_id = intake.state.label(REPO, pr, "need:reviewer", actor="alice")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:need:reviewer:{event_id}"
    assert request.job_name == "stage_reviewer"
    assert request.tags["codexk8s/role"] == "reviewer" and request.tags["codexk8s/pr"] == f"{REPO}#{pr}"
    assert _config(request)["pr_number"] == pr
    assert intake.tick(pr_sensor).run_requests == []


def test_a_trigger_label_on_a_pr_is_explained(intake: Intake) -> None:
    pr = _pull(intake)
    intake.state.label(REPO, pr, "run:dev")
    assert intake.tick(pr_sensor).run_requests == []
    (comment,) = intake.state.comments(REPO, pr)
    assert "run_label_on_pull_request" in comment["body"]


def test_changes_requested_revises_the_stage_on_the_pr(intake: Intake) -> None:
    issue = intake.state.add_issue(REPO, "Checkout")
    pr = _pull(intake, labels=("run:dev",), linked_issue=None, head=f"codex/issue-{issue}")
    review_id = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review_id}"
    assert request.job_name == "stage_dev"
    config = _config(request)
    assert (config["revise"], config["pr_number"], config["issue_number"]) == (True, pr, issue)
    audit = intake.store.events(request.run_key)[0]
    assert audit["payload"]["resolved_from"] == "pr_labels"


def test_stage_from_the_linked_issue_then_from_run_history(intake: Intake) -> None:
    issue = intake.state.add_issue(REPO, "Design the cart", labels=("run:design",))
    pr = _pull(intake, linked_issue=issue)
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert (request.job_name, _config(request)["issue_number"]) == ("stage_design", issue)
    assert intake.store.events(request.run_key)[0]["payload"]["resolved_from"] == "issue_labels"

    lone = _pull(intake)
    intake.store.register_run(RunRecord(f"{REPO}#{lone}:run:qa:1", REPO, "qa", stage="qa", pr_number=lone))
    intake.state.review(REPO, lone, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.job_name == "stage_qa"
    assert intake.store.events(request.run_key)[0]["payload"]["resolved_from"] == "run_history"


def test_two_stages_on_the_pr_ask_for_input(intake: Intake) -> None:
    pr = _pull(intake, labels=("run:plan", "run:dev"))
    review_id = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    assert intake.tick(pr_sensor).run_requests == []
    assert "need:input" in intake.state.labels(REPO, pr)
    (comment,) = intake.state.comments(REPO, pr)
    assert "stage_ambiguous" in comment["body"] and "`run:dev:revise`" in comment["body"]
    assert intake.tick(pr_sensor).run_requests == []
    assert len(intake.state.comments(REPO, pr)) == 1
    key = f"{REPO}#{pr}:review:changes_requested:review-{review_id}"
    assert intake.store.events(key)[0]["payload"]["reason"] == "stage_ambiguous"


def test_no_stage_anywhere_is_not_resolved(intake: Intake) -> None:
    pr = _pull(intake)
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    assert intake.tick(pr_sensor).run_requests == []
    assert "need:input" in intake.state.labels(REPO, pr)
    assert "stage_not_resolved" in intake.state.comments(REPO, pr)[0]["body"]


def test_other_reviews_and_unpermitted_reviewers_start_nothing(intake: Intake) -> None:
    pr = _pull(intake, labels=("run:dev",))
    intake.state.review(REPO, pr, "APPROVED", user="bob")
    intake.state.review(REPO, pr, "COMMENTED", user="bob")
    assert intake.tick(pr_sensor).run_requests == []
    assert intake.state.comments(REPO, pr) == []
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="carol")  # read permission
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="lint[bot]", user_type="Bot")
    assert intake.tick(pr_sensor).run_requests == []
    assert len(intake.state.comments(REPO, pr)) == 2


def test_each_sensor_keeps_to_its_own_kind(intake: Intake) -> None:
    issue = intake.state.add_issue(REPO, "An issue")
    pr = _pull(intake)
    intake.tick(issue_sensor)
    intake.state.label(REPO, issue, "run:dev")
    intake.state.label(REPO, pr, "need:reviewer")
    assert [r.job_name for r in intake.tick(pr_sensor).run_requests] == ["stage_reviewer"]
    assert [r.job_name for r in intake.tick(issue_sensor).run_requests] == ["stage_dev"]


def test_a_pr_naming_a_missing_issue_still_revises_and_blocks_nothing(intake: Intake) -> None:
    pr = _pull(intake, labels=("run:dev",), head="codex/issue-999")
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert (request.job_name, _config(request)["issue_number"]) == ("stage_dev", None)


def test_a_permanent_error_on_one_pr_is_audited_and_skipped(intake: Intake, monkeypatch) -> None:
    broken = _pull(intake, labels=("run:dev",))
    healthy = intake.state.add_pull(REPO, "Other", labels=("run:plan",))
    intake.state.review(REPO, broken, "CHANGES_REQUESTED", user="bob")
    intake.state.review(REPO, healthy, "CHANGES_REQUESTED", user="bob")
    real = RepoApi.pull_reviews_since

    def reviews(self: RepoApi, number: int, since: datetime) -> Window:
        if number == broken:  # a payload GitHub should never send: a review without an id
            bad = {"state": "CHANGES_REQUESTED", "submitted_at": "2026-01-01T00:01:00Z", "user": {"login": "bob"}}
            return Window([bad], True)
        return real(self, number, since)

    monkeypatch.setattr(RepoApi, "pull_reviews_since", reviews)
    assert [r.job_name for r in intake.tick(pr_sensor).run_requests] == ["stage_plan"]
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT correlation_key, payload FROM flow_events WHERE event_type = 'intake.item_failed'")
        (row,) = rows.fetchall()
    assert row["correlation_key"].startswith(f"{REPO}#{broken}:intake:")
    assert row["payload"]["error"] == f"PayloadError: review on {REPO}#{broken}: field 'id' is missing"
    assert intake.tick(pr_sensor).run_requests == []


def test_a_review_on_a_forks_pull_request_revises_nothing(intake: Intake) -> None:
    """An outsider's PR from a fork branch named `main`, its body linking an issue that carries `run:dev`: a
    maintainer's "request changes" would revise `dev` and push to the PR's head branch by name, which here is this
    repository's main. A fork's branch is not this repository's: the review is explained, and nothing runs."""
    victim = intake.state.add_issue(REPO, "Payments refactor", labels=("run:dev",))
    for fork in ("mallory/shop", None):  # a fork, and a fork deleted since
        pr = intake.state.add_pull(
            REPO, "typo fix", body=f"small typo. Fixes #{victim}", head="main", user="mallory", head_fork=fork
        )
        assert intake.tick(pr_sensor).run_requests == []  # the sensor's first look
        review_id = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
        assert intake.tick(pr_sensor).run_requests == []
        key = f"{REPO}#{pr}:review:changes_requested:review-{review_id}"
        (event,) = intake.store.events(key)
        assert event["payload"]["reason"] == "pull_request_from_fork", event
        assert "branch is in another repository (a fork)" in event["payload"]["message"]
    # The same PR from a branch of this repository still revises.
    ours = intake.state.add_pull(REPO, "cart", body=f"Fixes #{victim}", head=f"codex/issue-{victim}", user="alice")
    assert intake.tick(pr_sensor).run_requests == []
    intake.state.review(REPO, ours, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.job_name == "stage_dev" and _config(request)["pr_number"] == ours
