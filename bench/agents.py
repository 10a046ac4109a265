"""The platform's overhead around a real Codex CLI run, as a ratio to a 2 s scripted model, side by side with the
scripted shell agent of bench/stage_run.py in the same process.

A full local `stage_dev` run (fake GitHub, bare remote, embedded PostgreSQL, the runner and its sandbox) with the
real `codex` (installed by `make agents`) against the scripted model on loopback, whose four turns take 0.5 s
each (2 s of "model"):

- before = run start → the agent's first model request (context, prompt, Pipes, checkout, sandbox, agent setup,
  Codex's own start);
- after = the last model answer → run end (Codex's exit, outcome judging, usage, commit, push, PR, comment).

Run: .venv/bin/python bench/agents.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stage_run import seed_remote, shell_agent_catalog
from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.delivery.stage_jobs import StageRunConfig, stage_run_config, stage_run_tags
from codexk8s_pipelines.settings import Environment
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from tests.github_server import GitHubServer
from tests.helpers import REPO_ROOT
from tests.model_server import ModelServer, Say, Shell, WriteFile

MODEL_SECONDS = 2.0
TURNS = 4
RESULT = json.dumps({"summary": "bench", "status": "done", "diagnosis": None, "next_step_hint": None})


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def main(runs: int = 3) -> None:
    if not (REPO_ROOT / ".tools" / "bin" / "codex").exists():
        sys.exit("codex is not installed in .tools/bin: run `make agents` first")
    with (
        tempfile.TemporaryDirectory(dir=REPO_ROOT / ".tools") as tmp_name,
        GitHubServer() as server,
        ModelServer() as model,
    ):
        tmp = Path(tmp_name)
        with EmbeddedPostgres(tmp / "pg") as pg:
            store = PlatformStore(pg.url or "")
            store.migrate()
            remote = seed_remote(tmp)
            catalogs = {
                "codex": f"kinds:\n  codex: {{endpoint: {{base_url: '{model.v1}', key_env: BENCH_MODEL_KEY}}}}\n",
                "shell": shell_agent_catalog(tmp, MODEL_SECONDS),
            }
            for name, text in catalogs.items():
                (tmp / f"{name}.yaml").write_text(text)
            (tmp / "codexk8s.yaml").write_text(f"repositories:\n  - github: acme/bench\n    git_url: {remote}\n")
            os.environ.update(
                CODEXK8S_CONFIG=str(tmp / "codexk8s.yaml"), CODEXK8S_HOME=str(tmp / "home"),
                CODEXK8S_GITHUB_TOKEN=server.token, CODEXK8S_GITHUB_API_URL=server.url,
                CODEXK8S_DATABASE_URL=store.url, BENCH_MODEL_KEY="bench-key",
                PATH=f"{REPO_ROOT / '.tools' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            )  # fmt: skip
            load_config_from_environment.cache_clear()
            server.state.add_repo("acme/bench")
            job = build_definitions(Environment.LOCAL).resolve_job_def("stage_dev")
            figures: dict[str, tuple[list[float], list[float]]] = {"shell": ([], []), "codex": ([], [])}
            for i in range(runs):
                for name in ("shell", "codex"):  # alternated, so both see the same machine load
                    os.environ["CODEXK8S_AGENT_CATALOG"] = str(tmp / f"{name}.yaml")
                    model.script(
                        Shell("true"), WriteFile("notes.md", f"noted {i}\n"),
                        WriteFile(".codexk8s/result.json", RESULT), Say("done"), delay_seconds=MODEL_SECONDS / TURNS,
                    )  # fmt: skip
                    number = server.state.add_issue("acme/bench", f"bench {name} {i}")
                    config = StageRunConfig(
                        repository="acme/bench", correlation_key=f"acme/bench#{number}:run:dev:{name}{i}",
                        issue_number=number, stage="dev", role="dev", trigger_label="run:dev", model="gpt-5.5",
                        reasoning="high",
                    )  # fmt: skip
                    t0 = time.time()
                    result = job.execute_in_process(run_config=stage_run_config(config), tags=stage_run_tags(config))
                    t1 = time.time()
                    if not result.success:
                        raise SystemExit(f"{name} run {i} failed")
                    if name == "shell":
                        workdir = Path(result.output_for_node("render_prompt_op")["workdir"])
                        agent = json.loads((workdir / ".codexk8s" / "times.json").read_text())
                        start, end = agent["start"], agent["end"]
                    else:
                        turns = model.turns()
                        start, end = turns[0].at, max(t.done_at or t.at for t in turns)
                    figures[name][0].append(start - t0)
                    figures[name][1].append(t1 - end)
            for name, (before, after) in figures.items():
                b, a = _median(before), _median(after)
                print(
                    f"{name:>5} agent (median of {runs}, model/agent {MODEL_SECONDS:g} s): "
                    f"run start → first model request {b:5.2f} s, last answer → run end {a:5.2f} s, "
                    f"overhead/model time {(a + b) / MODEL_SECONDS:4.2f}"
                )
            (sb, sa), (cb, ca) = ([_median(x) for x in figures[n]] for n in ("shell", "codex"))
            print(f"real Codex overhead / scripted shell overhead: {(cb + ca) / (sb + sa):4.2f}")


if __name__ == "__main__":
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    with sigterm_as_interrupt():
        main()
