"""`codexk8s`: the installed command answers "why did my label not start anything?" and checks the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEXK8S = Path(sys.executable).with_name("codexk8s")


def codexk8s(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CODEXK8S_CONFIG"}
    environ.update(env or {})
    return subprocess.run([str(CODEXK8S), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def explain_json(*args: str, **kw: object) -> dict[str, object]:
    result = codexk8s("triggers", "explain", *args, "--json", **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_the_issue_example_runs_stage_dev() -> None:
    result = codexk8s(
        "triggers",
        "explain",
        "--labels",
        "run:dev,bug",
        "--added",
        "run:dev",
        "--actor",
        "alice",
        "--permission",
        "write",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "decision: run",
        "reason:   trigger_label",
        "          run:dev added by alice starts stage_dev",
    ]
    assert "stage:    dev (revise: no), role: dev, job: stage_dev" in result.stdout


def test_json_has_the_documented_keys() -> None:
    data = explain_json("--labels", "run:dev,bug", "--added", "run:dev", "--actor", "alice", "--permission", "write")
    assert {"kind", "stage", "revise", "role", "reason"} <= set(data)
    assert (data["kind"], data["stage"], data["revise"], data["role"], data["reason"]) == (
        "run",
        "dev",
        False,
        "dev",
        "trigger_label",
    )


@pytest.mark.parametrize(
    ("args", "kind", "reason"),
    [
        (
            ["--labels", "run:dev,run:qa", "--added", "run:qa", "--permission", "admin"],
            "conflict",
            "multiple_trigger_labels",
        ),
        (["--labels", "run:dev", "--added", "run:dev", "--permission", "read"], "ignored", "actor_not_permitted"),
        (["--labels", "run:qa", "--added", "run:qa", "--permission", "write"], "ignored", "dev_run_missing"),
        (["--labels", "bug", "--added", "bug", "--permission", "write"], "ignored", "not_a_trigger_label"),
        (
            ["--pr", "--labels", "need:reviewer", "--added", "need:reviewer", "--permission", "write"],
            "run",
            "reviewer_requested",
        ),
        (
            ["--pr", "--review", "approved", "--labels", "run:dev", "--permission", "write"],
            "ignored",
            "review_not_changes_requested",
        ),
        (
            ["--pr", "--review", "changes_requested", "--labels", "run:plan,run:dev", "--permission", "write"],
            "ignored",
            "stage_ambiguous",
        ),
        (["--pr", "--review", "changes_requested", "--permission", "write"], "ignored", "stage_not_resolved"),
    ],
)
def test_decisions_and_reasons(args: list[str], kind: str, reason: str) -> None:
    data = explain_json("--actor", "alice", *args)
    assert (data["kind"], data["reason"]) == (kind, reason)


def test_explain_a_forks_pull_request() -> None:
    review = ["--pr", "--review", "changes_requested", "--labels", "run:dev", "--actor", "bob", "--permission", "write"]
    assert explain_json(*review)["kind"] == "run"
    assert explain_json(*review, "--fork")["reason"] == "pull_request_from_fork"
    wrong = codexk8s("triggers", "explain", "--pr", "--added", "need:reviewer", "--actor", "alice", "--fork")
    assert wrong.returncode == 2 and "--fork describes the branch of a reviewed pull request" in wrong.stderr


def test_review_revises_the_stage_of_the_issue_then_of_the_history() -> None:
    by_issue = explain_json(
        "--pr",
        "--review",
        "changes_requested",
        "--issue-labels",
        "run:design",
        "--actor",
        "bob",
        "--permission",
        "write",
    )
    assert (by_issue["stage"], by_issue["revise"], by_issue["resolved_from"]) == ("design", True, "issue_labels")
    by_history = explain_json(
        "--pr", "--review", "changes_requested", "--history", "qa,dev", "--actor", "bob", "--permission", "write"
    )
    assert (by_history["stage"], by_history["trigger_label"]) == ("qa", "run:qa:revise")


def test_a_bot_is_refused_whatever_its_permission() -> None:
    data = explain_json(
        "--labels",
        "run:dev",
        "--added",
        "run:dev",
        "--actor",
        "ci[bot]",
        "--actor-type",
        "Bot",
        "--permission",
        "admin",
    )
    assert data["kind"] == "ignored" and data["reason"] == "actor_not_permitted"
    assert "only humans" in str(data["message"])


def test_the_sample_configuration_puts_release_behind_an_approval() -> None:
    args = ("--labels", "run:release", "--added", "run:release", "--dev-run", "--actor", "alice")
    waiting = explain_json(*args, "--permission", "write")
    assert waiting["kind"] == "approval_required"
    assert "maintain" in str(waiting["approvers"])
    assert explain_json(*args, "--permission", "maintain")["kind"] == "run"


def test_an_explicit_config_file_changes_the_answer(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("triggers:\n  min_permission: read\nstages:\n  dev: {label: 'go:dev'}\n")
    data = explain_json(
        "--labels", "go:dev", "--added", "GO:DEV ", "--actor", "al", "--permission", "read", "--config", str(config)
    )
    assert (data["kind"], data["stage"]) == ("run", "dev")


def test_bad_arguments_and_bad_config_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    result = codexk8s("triggers", "explain", "--added", "run:dev", "--actor", "a", "--permission", "owner")
    assert result.returncode == 2 and "'owner' is not a permission" in result.stderr
    result = codexk8s("triggers", "explain", "--actor", "a", "--permission", "write")
    assert result.returncode == 2 and "--added" in result.stderr
    result = codexk8s("triggers", "explain", "--review", "changes_requested", "--actor", "a")
    assert result.returncode == 2 and "add --pr" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages:\n  deploy: {}\n")
    result = codexk8s("triggers", "explain", "--added", "run:dev", "--actor", "a", "--config", str(broken))
    assert result.returncode == 2
    assert f"{broken}: stages.deploy: unknown stage 'deploy'" in result.stderr


def test_config_check(tmp_path: Path) -> None:
    ok = codexk8s("config", "check")
    assert ok.returncode == 0 and ok.stdout.startswith("codexk8s.yaml: valid — 1 repositories")
    broken = tmp_path / "broken.yaml"
    broken.write_text("triggers: {min_permission: 7}\n")
    bad = codexk8s("config", "check", str(broken))
    assert bad.returncode == 2 and f"{broken}: triggers.min_permission:" in bad.stderr
