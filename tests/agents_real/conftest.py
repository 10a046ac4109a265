"""The real agent programs (installed by `make agents` into .tools/) against the scripted model on loopback.

`run_direct` runs one agent the way the runner does: its catalog preset, `agent_setup.prepare` in a private
HOME, the model endpoint pointed at the scripted server, the prompt on stdin (or in a file for aider), a hard
timeout. It returns what the platform judges and reports from: the transcript, the usage and the verdict.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_kinds import launch_settings
from codexk8s_pipelines.agents.agent_setup import PreparedAgent, prepare
from codexk8s_pipelines.agents.catalog import AgentSpec, load_catalog
from codexk8s_pipelines.agents.outcome import Evidence, Outcome, judge
from codexk8s_pipelines.agents.transcript import Transcript, read_transcript
from codexk8s_pipelines.agents.usage import Usage, parse_usage
from tests.helpers import REPO_ROOT, git
from tests.model_server import ModelServer

AGENT_BIN = REPO_ROOT / ".tools" / "bin"
PROGRAMS = {"codex": "codex", "claude-code": "claude", "opencode": "opencode", "aider": "aider"}
KINDS = tuple(PROGRAMS)
MODEL_KEY = "scripted-model-key"
RUN_TIMEOUT = 90


def require_agent(kind: str) -> None:
    if not (AGENT_BIN / PROGRAMS[kind]).exists():
        pytest.skip(f"{PROGRAMS[kind]} is not installed in {AGENT_BIN}: run `make agents` (make test does)")


def agent_path() -> str:
    return f"{AGENT_BIN}:/usr/local/bin:/usr/bin:/bin"


@pytest.fixture
def model() -> Iterator[ModelServer]:
    with ModelServer() as server:
        yield server


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "checkout"
    git("init", "-q", "-b", "main", str(repo))
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def checkout(cart):\n    return sum(cart)\n")
    (repo / "README.md").write_text("# shop\n")
    git("add", ".", cwd=repo)
    git("-c", "user.name=seed", "-c", "user.email=seed@example.com", "commit", "-qm", "seed", cwd=repo)
    return repo


def agent_spec(kind: str, base_url: str | None, **overrides: object) -> AgentSpec:
    """The catalog preset of `kind`, as a dev agent, with its endpoint pointed at `base_url`."""
    preset = load_catalog().kinds[kind]  # type: ignore[index]
    endpoint = preset.endpoint.model_copy(update={"base_url": base_url})
    fields = {
        "name": f"real-{kind}",
        "role": "dev",
        "kind": kind,
        "command": preset.command,
        "prompt_via": preset.prompt_via,
        "default_model": preset.default_model,
        "known_models": preset.known_models,
        "reasoning_aliases": preset.reasoning_aliases,
        "endpoint": endpoint,
        "mcp_tools": ["run_status_report"],
        **overrides,
    }
    return AgentSpec.model_validate(fields)


@dataclass
class DirectRun:
    exit_code: int | None
    lines: list[str]
    transcript: Transcript
    usage: Usage
    prepared: PreparedAgent
    seconds: float
    timed_out: bool = False
    changed: list[str] = field(default_factory=list)

    def judge(self, report_status: str | None = "done", report_problem: str | None = None) -> Outcome:
        return judge(
            Evidence(
                self.transcript,
                self.exit_code,
                changed_files=self.changed,
                report_status=report_status,
                report_problem=report_problem,
            )
        )


def changed_files(repo: Path) -> list[str]:
    out = git("status", "--porcelain", "--untracked-files=all", cwd=repo)
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def run_direct(
    kind: str,
    checkout: Path,
    home: Path,
    prompt: str,
    *,
    base_url: str | None,
    model: str | None = None,
    reasoning: str = "high",
    resume: bool = False,
    session_dir: Path | None = None,
    mcp_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> DirectRun:
    """One run of the real agent `kind` in `checkout`, set up exactly as the runner sets it up."""
    require_agent(kind)
    spec = agent_spec(kind, base_url)
    chosen = model or spec.default_model
    launch = launch_settings(
        spec, chosen, reasoning, resume=resume, session_dir=str(session_dir) if session_dir else None
    )
    prompt_file = home.parent / f"{home.name}-prompt.md"
    home.mkdir(parents=True, exist_ok=True)
    prompt_file.write_text(prompt, encoding="utf-8")
    command = spec.render_command(chosen, reasoning, checkout, prompt_file)
    base_env = {"PATH": agent_path(), "HOME": str(home), "LC_ALL": "C.UTF-8", spec.endpoint.key_env: MODEL_KEY}
    if mcp_url:
        base_env["CODEXK8S_MCP_URL"] = mcp_url
    base_env.update(extra_env or {})
    prepared = prepare(launch, command, home, base_env)
    env = {**base_env, **prepared.env, **{a: base_env.get(k, "") for a, k in prepared.key_aliases.items()}}
    started = time.monotonic()
    timed_out = False
    stdin = prompt.encode() if spec.prompt_via == "stdin" else b""
    try:
        done = subprocess.run(
            prepared.command, cwd=checkout, env=env, input=stdin, capture_output=True, timeout=timeout
        )
        exit_code: int | None = done.returncode
        out, err = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        exit_code, timed_out = None, True
        out, err = exc.stdout or b"", exc.stderr or b""
    seconds = time.monotonic() - started
    lines = out.decode("utf-8", "replace").splitlines() + err.decode("utf-8", "replace").splitlines()
    transcript = read_transcript(kind, lines)
    usage = parse_usage(kind, transcript, prepared.analytics_log)
    return DirectRun(exit_code, lines, transcript, usage, prepared, seconds, timed_out, changed_files(checkout))


__all__ = ["KINDS", "MODEL_KEY", "DirectRun", "agent_path", "agent_spec", "os", "require_agent", "run_direct"]
