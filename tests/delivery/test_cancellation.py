"""Cancelling a stage run stops the agent process and leaves the service comment saying so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from .conftest import REPO, Stage
from .test_budget_release import _held, with_budgets

# The agent runs sandboxed (issue 12): it can write only its checkout, and its PIDs are its namespace's, so it
# signals that it started in the checkout and the test finds its processes from outside by their command line.
SLOW_AGENT = """
    import os, pathlib, sys, time
    sys.stdin.read()
    pathlib.Path(".codexk8s").mkdir(exist_ok=True)
    pathlib.Path(".codexk8s/started").write_text(str(os.getpid()))
    time.sleep(120)
"""


def _processes_of(script: Path) -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] != psutil.STATUS_ZOMBIE and str(script) in " ".join(proc.info["cmdline"] or ()):
            found.append(proc.pid)
    return found


RUN_JOB = """
    import json, sys
    from codexk8s_pipelines.definitions import build_definitions
    from codexk8s_pipelines.settings import Environment
    request = json.loads(sys.argv[1])
    job = build_definitions(Environment.LOCAL).resolve_job_def(request["job"])
    result = job.execute_in_process(run_config=request["run_config"], tags=request["tags"], raise_on_error=False)
    print("RUN_ID", result.run_id, "SUCCESS", result.success, flush=True)
"""


@pytest.mark.timeout(180)
def test_an_interrupted_run_stops_the_agent_and_says_so(stage: Stage, tmp_path: Path, monkeypatch) -> None:
    agent = tmp_path / "slow_agent.py"
    agent.write_text(textwrap.dedent(SLOW_AGENT))
    catalog = tmp_path / "slow.yaml"
    catalog.write_text(f"agents:\n  dev:\n    command: ['{sys.executable}', '{agent}']\n")
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(catalog))
    started = tmp_path / "home" / "workspaces"

    with_budgets()
    number = stage.state.add_issue(REPO, "Long task")
    stage.trigger()
    stage.state.label(REPO, number, "run:dev", actor="alice")
    (request,) = stage.trigger()
    assert _held(stage) == 1  # the launch reserved its per-run cap
    payload = json.dumps({"job": request.job_name, "run_config": request.run_config, "tags": request.tags})
    worker = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(RUN_JOB), payload],
        env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not list(started.glob("*/.codexk8s/started")) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert list(started.glob("*/.codexk8s/started")), worker.stdout.read() if worker.stdout else ""
        assert _processes_of(agent)

        os.kill(worker.pid, signal.SIGINT)  # what terminating the run does to its worker process
        output, _ = worker.communicate(timeout=90)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)

    assert "SUCCESS False" in output, output[-3000:]
    deadline = time.monotonic() + 10
    while _processes_of(agent) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_of(agent) == []
    bodies = [c["body"] for c in stage.state.comments(REPO, number) if "codexk8s:run" in c["body"]]
    assert len(bodies) == 1 and "Run cancelled" in bodies[0], bodies
    assert stage.store.get_run(request.run_key or "")["status"] == "canceled"  # type: ignore[index]
    assert "run.canceled" in [e["event_type"] for e in stage.store.events(request.run_key or "")]
    assert _held(stage) == 0  # no usage will be reported: the cancelled run gave its budget hold back
    assert stage.branches() == ["main"]
