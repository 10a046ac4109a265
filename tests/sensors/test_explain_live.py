"""`codexk8s triggers explain owner/repo#N` against the fake GitHub: the sensor's decision, with its evidence,
and no side effect at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from codexk8s_pipelines.store.database import RunRecord
from sensors.github import github_issue_labels_sensor as issue_sensor

from .conftest import REPO, Intake
from .test_budget_gate import _held

CODEXK8S = Path(sys.executable).with_name("codexk8s")
REPO_ROOT = Path(__file__).resolve().parents[2]


def explain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, **(env or {}))
    return subprocess.run(
        [str(CODEXK8S), "triggers", "explain", *args], cwd=REPO_ROOT, env=environ, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def _flow_event_count(intake: Intake) -> int:
    with intake.store.connect() as conn:
        return int(conn.execute("SELECT count(*) AS n FROM flow_events").fetchone()["n"])


def test_live_issue_shows_labels_events_decision_and_run(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)
    intake.state.label(REPO, number, "bug", actor="carol")
    event_id = intake.state.label(REPO, number, "run:dev", actor="alice")
    before = _flow_event_count(intake)

    result = explain(f"{REPO}#{number}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"{REPO}#{number} (issue) 'Checkout fails'" in out
    assert "+ bug  by carol (User)" in out and "+ run:dev  by alice (User)" in out
    assert "decided:  label run:dev added by alice" in out
    assert "decision: run" in out and "job: stage_dev" in out
    assert f"run key:  {REPO}#{number}:run:dev:{event_id}  → no run recorded" in out
    assert _flow_event_count(intake) == before and intake.state.comments(REPO, number) == []

    intake.tick(issue_sensor)
    data = json.loads(explain(f"{REPO}#{number}", "--json").stdout)
    assert (data["kind"], data["stage"], data["reason"], data["run_status"]) == (
        "run",
        "dev",
        "trigger_label",
        "requested",
    )
    assert [e["label"] for e in data["label_events"]] == ["bug", "run:dev"]
    assert [(r["event_type"], r["detail"]) for r in data["recorded"]] == [("run.requested", "trigger_label")]
    out = explain(f"{REPO}#{number}").stdout
    assert "run.requested  (trigger_label)" in out and "if decided now" not in out  # the same answer, said once


def test_live_explain_shows_what_the_sensor_decided_when_history_moved_on(intake: Intake) -> None:
    """`run:qa` was refused (no dev run had succeeded); the dev run launched by hand succeeded afterwards. Deciding
    again says "run", but nothing ran: explain shows the sensor's recorded refusal first."""
    number = intake.state.add_issue(REPO, "QA it")
    intake.tick(issue_sensor)
    dev = f"{REPO}#{number}:manual-dev"
    intake.store.register_run(RunRecord(dev, REPO, "dev", "dev", False, number))
    intake.store.set_run_status(dev, "running")
    intake.state.label(REPO, number, "run:qa", actor="alice")
    assert intake.tick(issue_sensor).run_requests == []
    intake.store.set_run_status(dev, "succeeded")

    out = explain(f"{REPO}#{number}").stdout
    recorded, now = out.split("if decided now")
    assert "the sensor recorded:" in recorded and "trigger.ignored  (dev_run_missing)" in recorded
    assert "decision: run" in now and "no run recorded" in now


def test_live_explain_of_a_run_the_budgets_hold(intake: Intake) -> None:
    """Deciding alone calls a held run a run; explain says the budgets hold it and since when."""
    number, key = _held(intake)
    out = explain(f"{REPO}#{number}").stdout
    assert "budget.exceeded  (issue budget: $3.50 spent + $2.00 for this run > $5.00)" in out
    assert "if decided now" in out and f"run key:  {key}  → no run recorded" in out
    assert "note:     the budgets hold this run since " in out


def test_live_explain_says_why_not(intake: Intake) -> None:
    number = intake.state.add_issue(REPO, "Two triggers")
    intake.state.label(REPO, number, "run:dev", actor="alice")
    intake.state.label(REPO, number, "run:qa", actor="carol")
    data = json.loads(explain(f"{REPO}#{number}", "--json").stdout)
    assert (data["kind"], data["reason"]) == ("ignored", "actor_not_permitted")
    assert "carol has read permission" in data["message"]
    intake.state.unlabel(REPO, number, "run:qa", actor="carol")
    intake.state.label(REPO, number, "run:qa", actor="alice")
    data = json.loads(explain(f"{REPO}#{number}", "--json").stdout)
    assert (data["kind"], data["reason"], data["labels"]) == (
        "conflict",
        "multiple_trigger_labels",
        ["run:dev", "run:qa"],
    )


def test_live_pull_request_review(intake: Intake) -> None:
    pr = intake.state.add_pull(REPO, "Fix", labels=("run:dev",), head="feature/x")
    intake.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob")
    data = json.loads(explain(f"{REPO}#{pr}", "--json").stdout)
    assert (data["item_kind"], data["kind"], data["stage"], data["revise"]) == ("pull_request", "run", "dev", True)
    assert data["decided_event"].startswith("review ") and "by bob" in data["decided_event"]


def test_live_explain_of_a_long_history_decides_as_the_sensor(intake: Intake) -> None:
    """`run:plan`, then 1,100 toggles of `bug` (23 pages of events), then `run:dev`: explain reads the newest 20
    pages, as the sensor does, and rebuilds the labels from before them from the item's labels, so it names the same
    conflict. It replayed the pages as if the issue had started with no labels, and said the run would start."""
    number = intake.state.add_issue(REPO, "Two stages")
    intake.state.label(REPO, number, "run:plan", actor="alice")
    for _ in range(1100):
        intake.state.label(REPO, number, "bug", actor="alice")
        intake.state.unlabel(REPO, number, "bug", actor="alice")
    intake.state.label(REPO, number, "run:dev", actor="alice")
    data = json.loads(explain(f"{REPO}#{number}", "--json").stdout)
    assert (data["kind"], data["reason"]) == ("conflict", "multiple_trigger_labels")


def test_live_explain_errors_are_plain_sentences(intake: Intake) -> None:
    bad = explain("acme-shop-12")
    assert bad.returncode == 2 and "'acme-shop-12' is not owner/repo#N" in bad.stderr
    missing = explain(f"{REPO}#404")
    assert missing.returncode == 1 and f"{REPO}#404: GitHub answered 404" in missing.stderr
    assert "Traceback" not in missing.stderr
    nothing = intake.state.add_issue(REPO, "Quiet")
    quiet = explain(f"{REPO}#{nothing}")
    assert quiet.returncode == 0 and "no trigger label was ever added here" in quiet.stdout
    no_token = explain(f"{REPO}#{nothing}", env={"CODEXK8S_GITHUB_TOKEN": ""})
    assert no_token.returncode == 2 and "no GitHub credentials" in no_token.stderr
