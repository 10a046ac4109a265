"""Dagster's overhead around the agent in a local stage run, as a ratio to the agent's own time.

A no-op agent (it sleeps, then writes its result) runs in a real `stage_dev` run against the local fake GitHub,
a bare git remote and the embedded PostgreSQL: before = run start → agent start (context from GitHub, prompt,
Pipes, checkout); after = agent end → run end (scope check, commit, push, PR, comment, labels, audit).

Run: .venv/bin/python bench/stage_run.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_config, stage_run_tags
from codexk8s_pipelines.settings import Environment
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from tests.github_server import GitHubServer
from tests.helpers import git

AGENT = """
    import json, pathlib, sys, time
    sys.stdin.read()
    root = pathlib.Path(sys.argv[1])
    start = time.time()
    time.sleep(float(sys.argv[2]))
    (root / "notes.md").write_text("noted\\n")
    (root / ".codexk8s").mkdir(exist_ok=True)
    (root / ".codexk8s" / "result.json").write_text(json.dumps({"summary": "no-op", "status": "done",
        "diagnosis": None, "next_step_hint": None}))
    (root / ".codexk8s" / "times.json").write_text(json.dumps({"start": start, "end": time.time()}))
"""


def seed_remote(tmp: Path) -> Path:
    """A bare remote under `tmp` whose `main` holds one commit (a README)."""
    remote, seed = tmp / "remote.git", tmp / "seed"
    git("init", "--bare", "-b", "main", str(remote))
    git("init", "-b", "main", str(seed))
    (seed / "README.md").write_text("# bench\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-m", "seed", cwd=seed)
    git("push", str(remote), "main", cwd=seed)
    return remote


def shell_agent_catalog(tmp: Path, agent_seconds: float) -> str:
    """An agent catalog whose `dev` is the no-op agent (written to `tmp/agent.py`), sleeping `agent_seconds`.

    It writes its times beside its result (`.codexk8s/times.json`): the sandbox lets it write nothing else.
    """
    agent = tmp / "agent.py"
    agent.write_text(textwrap.dedent(AGENT))
    return f"agents:\n  dev:\n    command: ['{sys.executable}', '{agent}', '{{workdir}}', '{agent_seconds}']\n"


def main(agent_seconds: float = 2.0, runs: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp_name, GitHubServer() as server:
        tmp = Path(tmp_name)
        with EmbeddedPostgres(tmp / "pg") as pg:
            store = PlatformStore(pg.url or "")
            store.migrate()
            remote = seed_remote(tmp)
            (tmp / "agents.yaml").write_text(shell_agent_catalog(tmp, agent_seconds))
            (tmp / "codexk8s.yaml").write_text(f"repositories:\n  - github: acme/bench\n    git_url: {remote}\n")
            os.environ.update(
                CODEXK8S_CONFIG=str(tmp / "codexk8s.yaml"), CODEXK8S_AGENT_CATALOG=str(tmp / "agents.yaml"),
                CODEXK8S_HOME=str(tmp / "home"), CODEXK8S_GITHUB_TOKEN=server.token,
                CODEXK8S_GITHUB_API_URL=server.url, CODEXK8S_DATABASE_URL=store.url,
            )  # fmt: skip
            load_config_from_environment.cache_clear()
            server.state.add_repo("acme/bench")
            job = build_definitions(Environment.LOCAL).resolve_job_def("stage_dev")
            before, after = [], []
            for i in range(runs):
                number = server.state.add_issue("acme/bench", f"bench {i}")
                config = StageRunConfig(
                    repository="acme/bench", correlation_key=f"acme/bench#{number}:run:dev:{i}", issue_number=number,
                    stage="dev", role="dev", trigger_label="run:dev", model="gpt-5.4", reasoning="high",
                )  # fmt: skip
                t0 = time.time()
                result = job.execute_in_process(run_config=stage_run_config(config), tags=stage_run_tags(config))
                t1 = time.time()
                assert result.success
                # The agent is sandboxed: it can only write its checkout (its `.codexk8s/` is never committed).
                workdir = Path(result.output_for_node("render_prompt_op")["workdir"])
                agent_times = json.loads((workdir / ".codexk8s" / "times.json").read_text())
                before.append(agent_times["start"] - t0)
                after.append(t1 - agent_times["end"])
            b, a = sorted(before)[len(before) // 2], sorted(after)[len(after) // 2]
            print(
                f"stage run overhead (median of {runs}, agent {agent_seconds:g} s): "
                f"run start → agent start {b:5.2f} s, agent end → run end {a:5.2f} s, "
                f"overhead/agent time {(a + b) / agent_seconds:4.2f}"
            )


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    with sigterm_as_interrupt():
        main()
