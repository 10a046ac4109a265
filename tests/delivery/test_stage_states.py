"""What a stage run leaves on the issue and the PR: a discussion writes nothing, one state label at a time, and a
PR the platform opened stays linked to its own issue whatever the agent's summary says."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .conftest import REPO, Stage, github_pull_requests_sensor

# An agent that changes code and says so (unless its prompt says it may change no file), or says it is blocked while
# the flag file exists.
AGENT = """
import json, pathlib, sys
prompt = sys.stdin.read()
root, summary, flag = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
(root / ".codexk8s").mkdir(exist_ok=True)
if flag.exists():
    result = {"summary": "", "status": "blocked", "diagnosis": "Which payment provider? The issue does not say.",
              "next_step_hint": None}
else:
    if "you may not change any file" not in prompt:
        app = root / "src" / "app.py"
        app.write_text(app.read_text() + "\\n# handled\\n")
    result = {"summary": summary, "status": "done", "diagnosis": None, "next_step_hint": "run:qa"}
(root / ".codexk8s" / "result.json").write_text(json.dumps(result))
"""


def _agent(tmp_path: Path, summary: str = "Empty carts no longer crash.") -> Path:
    """Installs AGENT as the dev agent; returns the flag file that makes it answer `blocked` while it exists."""
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    flag = tmp_path / "blocked"
    catalog = Path(os.environ["CODEXK8S_AGENT_CATALOG"])
    command = [sys.executable, str(script), "{workdir}", summary, str(flag)]
    catalog.write_text("agents:\n  dev:\n    command: " + json.dumps(command) + "\n")
    return flag


def _events(stage: Stage, key: str, kind: str) -> list[dict]:
    return [e["payload"] for e in stage.store.events(key) if e["event_type"] == kind]


def test_a_discussion_comments_and_writes_nothing(stage: Stage, tmp_path: Path) -> None:
    """`mode:discussion` was decided (write scope none) and then dropped on the way to the job: the agent's code
    was pushed to codex/issue-N, a PR was opened and the issue went to in-review."""
    _agent(tmp_path, summary="Dropping 3.10 is safe: nothing uses its syntax.")
    number = stage.state.add_issue(REPO, "Should we drop Python 3.10?", body="Let's discuss first.")
    stage.trigger()
    stage.state.label(REPO, number, "mode:discussion", actor="alice")
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert request.tags["codexk8s/mode"] == "discussion"

    result = stage.execute(request)

    assert result.success
    assert result.output_for_node("prepare_context")["mode"] == "comment_only"
    assert result.output_for_node("render_prompt_op")["write_scope"] == "none"
    assert stage.branches() == ["main"]  # nothing pushed
    assert _events(stage, request.run_key or "", "run.pr.created") == []
    assert stage.state.labels(REPO, number) == ["mode:discussion"]  # the trigger came off; no state:in-review
    (comment,) = [c["body"] for c in stage.state.comments(REPO, number) if "codexk8s:run" in c["body"]]
    assert "Dropping 3.10 is safe" in comment
    assert "- Stage: `dev` (dev) — discussion: comments only, nothing is written" in comment
    assert "run:qa" not in comment  # a discussion moves no stage forward: no next stage is suggested


def test_a_stage_that_goes_through_after_a_block_is_in_review_only(stage: Stage, tmp_path: Path) -> None:
    """Blocked, answered, run again: the issue showed `state:blocked` and `state:in-review` at once, and nothing
    ever took `blocked` off (agents may not)."""
    flag = _agent(tmp_path)
    flag.write_text("1")
    number = stage.state.add_issue(REPO, "Add payments")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert not stage.execute(first).success
    assert sorted(stage.state.labels(REPO, number)) == ["run:dev", "state:blocked"]

    flag.unlink()  # the human answered in the thread and asks again
    stage.state.unlabel(REPO, number, "run:dev", actor="alice")
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (second,) = stage.trigger()
    assert stage.execute(second).success

    assert stage.state.labels(REPO, number) == ["state:in-review"]
    assert _events(stage, second.run_key or "", "run.labels.changed")[-1]["removed"] == ["run:dev", "state:blocked"]


def test_a_block_after_a_review_state_replaces_it(stage: Stage, tmp_path: Path) -> None:
    flag = _agent(tmp_path)
    number = stage.state.add_issue(REPO, "Add payments")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    assert stage.state.labels(REPO, number) == ["state:in-review"]

    flag.write_text("1")  # the next run of the stage cannot go on without an answer
    stage.state.label(REPO, number, "run:dev:revise", actor="alice")
    (second,) = stage.trigger()
    assert not stage.execute(second).success

    assert sorted(stage.state.labels(REPO, number)) == ["run:dev:revise", "state:blocked"]


def test_a_summary_naming_another_issue_does_not_take_the_pull_request_away(stage: Stage, tmp_path: Path) -> None:
    """The PR body starts with the agent's summary; "this also fixes #1" in it made a review of the PR for #2 look
    for #1's stage (refused: `stage_not_resolved`, `need:input` on the PR). A marker in the summary is inert."""
    other = stage.state.add_issue(REPO, "Old duplicate report: crash on empty cart")
    summary = f"Empty carts no longer crash; this also fixes #{other}. <!-- codexk8s:pr {REPO}#{other}:run:dev:1 -->"
    _agent(tmp_path, summary=summary)
    number = stage.state.add_issue(REPO, "Checkout fails on an empty cart")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (first,) = stage.trigger()
    assert stage.execute(first).success
    (created,) = _events(stage, first.run_key or "", "run.pr.created")
    pr = int(created["number"])
    body = stage.state.issue(REPO, pr).body
    assert body.count("<!-- codexk8s:pr ") == 1 and body.endswith(f"<!-- codexk8s:pr {first.run_key} -->")

    stage.intake.tick(github_pull_requests_sensor)
    stage.state.review(REPO, pr, "CHANGES_REQUESTED", user="bob", body="Please add a test.")
    (revise,) = stage.intake.tick(github_pull_requests_sensor).run_requests or []

    config = revise.run_config["ops"]["prepare_context"]["config"]
    assert (config["issue_number"], config["stage"], config["revise"]) == (number, "dev", True)
    assert "need:input" not in stage.state.labels(REPO, pr)
