"""The PR sensor records a merge once, keyed by the issue the PR works on: where the issue's lead time ends."""

from __future__ import annotations

from datetime import timedelta

from codexk8s_pipelines.insight import metrics
from codexk8s_pipelines.store.database import EventRecord
from sensors.github import github_pull_requests_sensor as pr_sensor
from tests.github_server import github_server  # noqa: F401  (fixture)
from tests.sensors.conftest import REPO, Intake, intake  # noqa: F401  (fixture)


def _merge(intake: Intake, pr: int, by: str) -> int:  # noqa: F811
    """Merge on the fake GitHub: the PR's `merged_at` and its `merged` issue event, as GitHub records them."""
    state = intake.state
    with state.lock:
        record = state.issue(REPO, pr)
        event = state._record_event(record, "merged", state.user(by))
        assert record.pull is not None
        record.pull.merged_at = record.updated_at
        record.state = "closed"
    return event


def test_a_merge_is_recorded_once_and_ends_the_lead_time(intake: Intake) -> None:  # noqa: F811
    issue = intake.state.add_issue(REPO, "Checkout")
    pr = intake.state.add_pull(REPO, "Fix checkout", linked_issue=issue, head=f"codex/issue-{issue}")
    assert intake.tick(pr_sensor).run_requests == []  # the sensor's first look
    _merge(intake, pr, "bob")
    assert intake.tick(pr_sensor).run_requests == []
    assert intake.tick(pr_sensor).run_requests == []  # a second look changes nothing
    merge_key = f"{REPO}#{issue}:pr:merged:{pr}"
    (row,) = intake.store.events(merge_key)
    assert (row["event_type"], row["actor_type"], row["actor_id"]) == ("pr.merged", "human", "bob")
    assert row["payload"] == {"number": pr, "merged_by": "bob"}
    assert row["created_at"] == intake.state.issue(REPO, pr).pull.merged_at  # GitHub's time, not the tick's
    merged_at, key = row["created_at"], f"{REPO}#{issue}:run:dev:1"
    intake.store.append_events(
        [
            EventRecord(key, "run.requested", "human", "alice", {"stage": "dev"}, merged_at - timedelta(hours=3)),
            EventRecord(key, "run.started", "system", "dagster", {}, merged_at - timedelta(hours=2)),
            EventRecord(key, "run.succeeded", "system", "dagster", {}, merged_at - timedelta(hours=1)),
        ]
    )
    day = row["created_at"].strftime("%Y-%m-%d")
    start, end = metrics.day_window(day)
    result = metrics.lead_time(intake.store, start, end, {"quick-fix": ("intake", "plan", "dev")})
    (flow,) = result.flows
    assert (flow.issue_number, flow.pr_number, flow.profile) == (issue, pr, "quick-fix")
    assert flow.working_seconds == 3600 and flow.queue_wait_seconds == 3600
    assert flow.lead_seconds == 3 * 3600


def test_a_merge_of_a_commit_the_platform_did_not_push_records_a_hand_edit(intake: Intake) -> None:  # noqa: F811
    prs = {}
    for pushed in ("same", "other"):
        issue = intake.state.add_issue(REPO, f"Checkout {pushed}")
        pr = intake.state.add_pull(REPO, "Fix", linked_issue=issue, head=f"codex/issue-{issue}")
        head = intake.state.issue(REPO, pr).pull.head_sha
        commit = head if pushed == "same" else "0" * 40  # the runner pushed another commit than the merged head
        payload = {"status": "succeeded", "pushed": True, "commit": commit}
        intake.store.append_event(f"{REPO}#{issue}:run:dev:{pr}", "run.agent.finished", "system", "dagster", payload)
        prs[pushed] = (issue, pr, head)
    assert intake.tick(pr_sensor).run_requests == []  # the sensor's first look
    for _, pr, _ in prs.values():
        _merge(intake, pr, "bob")
    intake.tick(pr_sensor)
    issue, pr, _ = prs["same"]
    assert intake.store.events(f"{REPO}#{issue}:pr:hand_edited:{pr}") == []
    issue, pr, head = prs["other"]
    (hand,) = intake.store.events(f"{REPO}#{issue}:pr:hand_edited:{pr}")
    assert hand["payload"] == {"number": pr, "head": head, "platform_commit": "0" * 40}
    (merged,) = intake.store.events(f"{REPO}#{issue}:pr:merged:{pr}")
    assert hand["id"] < merged["id"] and hand["created_at"] == merged["created_at"]
