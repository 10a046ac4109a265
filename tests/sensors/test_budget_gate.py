"""Budgets at launch, through the real sensor, PyGithub and the platform database: an exhausted budget starts no
run and says so once with the figures; an approver's override or a raised budget starts it under its own key."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.domain.spend import Cost, CostSource, TokenCounts
from codexk8s_pipelines.store.usage import UsageRecord, open_holds, record_usage
from sensors.github import github_issue_labels_sensor as issue_sensor

from .conftest import CONFIG, REPO, Intake

BUDGET = """
budgets:
  per_run: {{cost: 2}}
  per_issue: {{cost: {issue}}}
stages:
  dev:
    approval: {{required: false, min_permission: maintain}}
  release:
    approval: {{required: true, min_permission: maintain, ttl_hours: 1}}
"""


def _configure(issue_cost: int) -> None:
    base = CONFIG.split("stages:")[0]
    Path(os.environ["CODEXK8S_CONFIG"]).write_text(base + BUDGET.format(issue=issue_cost))
    load_config_from_environment.cache_clear()


def _spent(intake: Intake, number: int, cost: str) -> None:
    record_usage(
        intake.store,
        UsageRecord(
            correlation_key=f"{REPO}#{number}:run:plan:1",
            repository=REPO,
            agent="codex",
            tokens=TokenCounts(10_000, 0, 1_000),
            cost=Cost(Decimal(cost), "USD", CostSource.PRICE_TABLE),
            issue_number=number,
            model="gpt-5.5",
        ),
        at=datetime.now(UTC),
    )


def _held(intake: Intake) -> tuple[int, str]:
    _configure(issue_cost=5)
    number = intake.state.add_issue(REPO, "Checkout fails on empty cart")
    assert intake.tick(issue_sensor).run_requests == []
    _spent(intake, number, "3.50")  # 3.50 spent + 2.00 held for the new run > 5.00
    event_id = intake.state.label(REPO, number, "run:dev", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    return number, f"{REPO}#{number}:run:dev:{event_id}"


def test_an_exhausted_budget_starts_nothing_and_says_why_once(intake: Intake) -> None:
    number, key = _held(intake)
    assert intake.store.get_run(key) is None
    assert intake.events(key) == ["budget.exceeded", "budget.comment.posted"]
    (comment,) = intake.state.comments(REPO, number)
    body = comment["body"]
    assert "Budget exhausted: no run started" in body and "`run:dev`" in body
    assert "issue budget: $3.50 spent + $2.00 for this run > $5.00" in body
    assert "`budget:override`" in body and "maintain" in body
    assert "need:input" in intake.state.labels(REPO, number)
    for _ in range(2):  # later ticks neither start it nor repeat themselves
        assert intake.tick(issue_sensor).run_requests == []
    assert len(intake.state.comments(REPO, number)) == 1
    assert [h.correlation_key for h in open_holds(intake.store)] == [key]


def test_an_override_by_an_approver_starts_it_once(intake: Intake) -> None:
    number, key = _held(intake)
    intake.state.label(REPO, number, "budget:override", actor="carol")  # read permission: not an approver
    assert intake.tick(issue_sensor).run_requests == []
    refusal = intake.state.comments(REPO, number)[-1]["body"]
    assert "carol may not override the budget for run:dev: needs" in refusal
    intake.state.unlabel(REPO, number, "budget:override")
    intake.state.label(REPO, number, "budget:override", actor="bob")  # maintain
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key and request.job_name == "stage_dev"
    assert intake.events(key)[-2:] == ["budget.overridden", "run.requested"]
    assert intake.store.get_run(key)["status"] == "requested"  # type: ignore[index]
    assert open_holds(intake.store) == []
    assert intake.tick(issue_sensor).run_requests == []


def test_raising_the_budget_starts_the_held_run(intake: Intake) -> None:
    number, key = _held(intake)
    _configure(issue_cost=6)
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key
    assert intake.events(key)[-2:] == ["budget.released", "run.requested"]
    assert intake.tick(issue_sensor).run_requests == []
    # The released run holds its reservation: a second run of the issue no longer fits (3.50 + 2 + 2 > 6).
    intake.store.set_run_status(key, "succeeded")  # the dev run qa needs before it
    intake.state.unlabel(REPO, number, "run:dev")
    second = intake.state.label(REPO, number, "run:qa", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.events(f"{REPO}#{number}:run:qa:{second}")[0] == "budget.exceeded"


def test_a_budget_raised_in_the_file_starts_the_held_run_at_a_later_tick_without_a_reload(intake: Intake) -> None:
    """What the comment tells a maintainer: edit codexk8s.yaml and the next sensor tick starts it. The sensors run
    in the long-lived code server: nothing there clears a cache, the file's change is enough."""
    number, key = _held(intake)
    (comment,) = intake.state.comments(REPO, number)
    assert "raise the budget under `budgets:` in codexk8s.yaml (the next sensor tick starts it)" in comment["body"]
    base = CONFIG.split("stages:")[0]
    Path(os.environ["CODEXK8S_CONFIG"]).write_text(base + BUDGET.format(issue=60))  # the operator's edit, no reload
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key
    assert intake.events(key)[-2:] == ["budget.released", "run.requested"]


def test_without_budgets_nothing_is_reserved_or_held(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "x")
    intake.tick(issue_sensor)
    _spent(intake, number, "999")
    intake.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = intake.tick(issue_sensor).run_requests
    with intake.store.connect() as conn:
        assert conn.execute("SELECT count(*) AS n FROM budget_reservations").fetchone()["n"] == 0  # type: ignore[index]
    assert request.job_name == "stage_dev"
