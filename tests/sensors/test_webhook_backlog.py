"""A webhook backlog costs a GitHub read per item, not per delivery.

Each tick read at most 100 pending deliveries of a repository and drained only those, so an item named by many
deliveries was read again in every tick that turned up another of them: 50,000 deliveries over 6,000 items took
about 50,000 counted GitHub calls (hours of a token's budget) instead of about 6,000."""

from __future__ import annotations

import re

import pytest

import sensors.github
from codexk8s_pipelines.store.intake import DeliveryRecord, delivery_status, store_delivery
from sensors.github import POLL_SECONDS_VAR, RECONCILE_SECONDS_VAR
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.intake import TickOutcome

from .conftest import REPO, Intake

ITEMS, DELIVERIES = 20, 200
EVENTS = re.compile(rf"^/repos/{REPO}/issues/(\d+)/events")


def _backlog(intake: Intake) -> None:
    """DELIVERIES pending deliveries, several per issue and interleaved, as a burst of label edits leaves them."""
    with intake.store.connect() as conn:
        conn.execute(
            "INSERT INTO webhook_deliveries (delivery_id, event, action, repository, item_number, intake)"
            " SELECT 'burst-' || i, 'issues', 'labeled', %s, 1 + i %% %s, 'issue_labels' FROM generate_series(0, %s) i",
            (REPO, ITEMS, DELIVERIES - 1),
        )


def _item_reads(intake: Intake) -> list[int]:
    return [int(m.group(1)) for _, path, _ in intake.state.requests if (m := EVENTS.match(path))]


def _pending(intake: Intake) -> int:
    with intake.store.connect() as conn:
        row = conn.execute("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'").fetchone()
    return int(row["n"]) if row else 0


def test_a_backlog_of_deliveries_costs_one_read_per_item_and_a_later_delivery_still_starts_its_run(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POLL_SECONDS_VAR, "3600")  # polling far away: only webhooks name what changed
    monkeypatch.setenv(RECONCILE_SECONDS_VAR, "3600")
    state = intake.state
    numbers = [state.add_issue(REPO, f"issue {i}") for i in range(ITEMS)]
    intake.tick(issue_sensor)  # the first look
    for number in numbers:
        state.label(REPO, number, "triage")
    _backlog(intake)

    late: list[str] = []
    real_run_tick = sensors.github.run_tick

    def alice_labels_while_the_tick_runs(*args: object, **kwargs: object) -> TickOutcome:
        """After every item was read, before the tick drains: alice's run:dev, its delivery stored at once."""
        outcome = real_run_tick(*args, **kwargs)  # type: ignore[arg-type]
        event = state.label(REPO, numbers[0], "run:dev", actor="alice")
        store_delivery(intake.store, DeliveryRecord("late-1", "issues", "labeled", REPO, numbers[0], "issue_labels"))
        late.append(f"{REPO}#{numbers[0]}:run:dev:{event}")
        return outcome

    state.clear_requests()
    with monkeypatch.context() as mp:
        mp.setattr(sensors.github, "run_tick", alice_labels_while_the_tick_runs)
        assert intake.tick(issue_sensor).run_requests == []
    reads = _item_reads(intake)
    assert sorted(reads) == sorted(numbers)  # each item read once for its ten deliveries
    assert _pending(intake) == 1  # every delivery the reads covered is drained ...
    assert delivery_status(intake.store, "late-1")["status"] == "pending"  # type: ignore[index]  # ... not this one

    state.clear_requests()
    assert [r.run_key for r in intake.tick(issue_sensor).run_requests] == late  # alice's run starts next tick
    assert _item_reads(intake) == [numbers[0]] and _pending(intake) == 0
    state.clear_requests()
    intake.tick(issue_sensor)
    assert state.requests == []  # nothing left to read
