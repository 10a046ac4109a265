"""Items with long histories (review 26a, F3): an item's events and reviews are read from their newest end back to
the cursor, so thousands of earlier entries (an outsider's reviews on a public PR, a triage user's label toggles)
cannot push a real trigger out of what a tick reads; the labels from before the skipped pages still count; and
more new entries than one read takes is audited as `intake.item_failed`, never passed over in silence."""

from __future__ import annotations

from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor

from .conftest import REPO, Intake


def _item_failures(intake: Intake) -> list[dict]:
    with intake.store.connect() as conn:
        rows = conn.execute(
            "SELECT correlation_key, payload FROM flow_events WHERE event_type = 'intake.item_failed' ORDER BY id"
        )
        return rows.fetchall()


def _toggle(intake: Intake, number: int, times: int) -> None:
    for _ in range(times):  # trixie (triage) toggles a harmless label
        intake.state.label(REPO, number, "bug", actor="trixie")
        intake.state.unlabel(REPO, number, "bug", actor="trixie")


def test_a_changes_request_after_2000_outsider_reviews_still_revises(intake: Intake) -> None:
    pr = intake.state.add_pull(REPO, "Fix", labels=("run:dev",), head="codex/issue-9")
    assert intake.tick(pr_sensor).run_requests == []
    for _ in range(2000):  # mallory has no permission; anyone may comment-review a public PR
        intake.state.review(REPO, pr, "COMMENTED", user="mallory")
    assert intake.tick(pr_sensor).run_requests == []
    review = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    intake.state.clear_requests()
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review}"
    reads = [path for _, path, _ in intake.state.requests if f"/pulls/{pr}/reviews" in path]
    # page 1 for the links, then back from the last page over the cursor's 10-minute grace (here 600 reviews, one
    # a second), never the pages in between
    assert len(reads) <= 9 and not any("page=2&" in path for path in reads), reads
    assert _item_failures(intake) == []


def test_a_run_label_after_2000_label_events_still_runs(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)
    _toggle(intake, number, 1000)
    assert intake.tick(issue_sensor).run_requests == []
    event = intake.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == f"{REPO}#{number}:run:dev:{event}"
    assert intake.events(request.run_key) == ["run.requested"]


def test_labels_from_before_the_skipped_pages_still_count(intake: Intake) -> None:
    """A second run label decided with the labels the issue really has, however long ago the first was added: the
    same decision as on an issue with a short history."""
    decisions = []
    for toggles in (0, 1000):
        number = intake.state.add_issue(REPO, f"Two stages ({toggles})")
        intake.tick(issue_sensor)
        intake.state.label(REPO, number, "run:plan", actor="alice")
        intake.tick(issue_sensor)
        _toggle(intake, number, toggles)
        intake.tick(issue_sensor)
        event = intake.state.label(REPO, number, "run:dev", actor="alice")
        intake.tick(issue_sensor)
        key = f"{REPO}#{number}:run:dev:{event}"
        decisions.append(intake.events(key))
    short, long = decisions
    assert short and "run.requested" not in short  # two run labels at once: not a run
    assert long == short


def test_more_new_reviews_than_one_read_takes_decides_the_newest_and_is_audited(intake: Intake) -> None:
    """22 pages of new reviews, a maintainer's changes request the newest: the newest 20 pages are decided (the
    revise runs), and the unread older ones are audited, not passed over in silence."""
    pr = intake.state.add_pull(REPO, "Fix", labels=("run:dev",), head="codex/issue-9")
    assert intake.tick(pr_sensor).run_requests == []
    for _ in range(2150):  # 22 pages, all newer than the cursor: no tick ran while they came in
        intake.state.review(REPO, pr, "COMMENTED", user="mallory")
    review = intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review}"
    assert intake.tick(pr_sensor).run_requests == []  # decided once
    (failure,) = _item_failures(intake)
    assert failure["correlation_key"].startswith(f"{REPO}#{pr}:intake:")
    error = failure["payload"]["error"]
    assert error.startswith("ListTooLong:") and f"/pulls/{pr}/reviews" in error and "more than 20 pages" in error


def test_a_review_kept_pending_while_others_came_is_still_read(intake: Intake) -> None:
    """GitHub lists reviews by when they were started: a review kept pending for half an hour while 250 others came
    sits on an earlier page than they do, with a newer submission time. While the list fits one read it is read
    whole, so that review is found; a walk from the newest end stopped before its page."""
    state = intake.state
    pr = state.add_pull(REPO, "Fix", labels=("run:dev",), head="codex/issue-9")
    assert intake.tick(pr_sensor).run_requests == []
    review = state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")  # bob starts his review
    item = state.issue(REPO, pr)
    with state.lock:
        pending = item.reviews.pop()  # pending: not listed until submitted
    for _ in range(250):
        state.review(REPO, pr, "COMMENTED", user="mallory")
    intake.tick(pr_sensor)
    state.advance(30 * 60)  # bob writes for half an hour
    state.review(REPO, pr, "COMMENTED", user="mallory")
    intake.tick(pr_sensor)
    with state.lock:  # bob submits: listed where his review was started, submitted now
        stamp = state.tick()
        pending.submitted_at = stamp
        item.reviews.insert(0, pending)
        item.updated_at = stamp
    (request,) = intake.tick(pr_sensor).run_requests
    assert request.run_key == f"{REPO}#{pr}:run:dev:revise:review-{review}"
