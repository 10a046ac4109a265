"""A whole stage run, locally: fake GitHub, a bare git remote, scripted agents, the platform database."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from codexk8s_pipelines.definitions import build_definitions
from codexk8s_pipelines.settings import Environment
from codexk8s_pipelines.store import PlatformStore
from sensors.github import github_issue_labels_sensor, github_pull_requests_sensor
from tests.github_server import GitHubServer, GitHubState, github_server  # noqa: F401
from tests.helpers import git
from tests.sensors.conftest import Intake

REPO = "acme/shop"

# Scripted agents: small programs standing in for Codex. They read the prompt on stdin like the real CLI.
AGENTS = {
    "dev_agent.py": """
        import json, pathlib, sys
        prompt = sys.stdin.read()
        root = pathlib.Path(sys.argv[1])
        app = root / "src" / "app.py"
        app.write_text(app.read_text() + "\\n# handled the empty cart\\n")
        (root / ".codexk8s").mkdir(exist_ok=True)
        import os
        (root / ".codexk8s" / "mcp_token").write_text(os.environ.get("CODEXK8S_MCP_TOKEN", ""))
        (root / ".codexk8s" / "result.json").write_text(json.dumps({
            "summary": "Empty carts no longer crash the checkout.", "status": "done",
            "diagnosis": None, "next_step_hint": "run:qa", "prompt_chars": len(prompt)}))
    """,
    "code_in_doc_stage.py": """
        import json, pathlib, sys
        sys.stdin.read()
        root = pathlib.Path(sys.argv[1])
        (root / "src" / "app.py").write_text("print('not allowed here')\\n")
        (root / "docs").mkdir(exist_ok=True)
        (root / "docs" / "plan.md").write_text("# Plan\\n")
    """,
    "reviewer_agent.py": """
        import json, pathlib, re, sys
        prompt = sys.stdin.read()
        root = pathlib.Path(sys.argv[1])
        (root / ".codexk8s").mkdir(exist_ok=True)
        first_line = (root / "src" / "app.py").read_text().splitlines()[0]
        import subprocess
        named = re.search(r"git diff (origin/[^`\\s]+?)[.][.][.]HEAD", prompt)  # the diff the prompt asks for
        base = named.group(1) if named else "NO-DIFF-IN-PROMPT"
        diff = subprocess.run(["git", "diff", "--name-only", base + "...HEAD"], cwd=root, capture_output=True,
                              text=True)
        changed = ", ".join(diff.stdout.split()) or diff.stderr.strip()
        (root / ".codexk8s" / "result.json").write_text(json.dumps({
            "summary": f"Looks right; one nit in src/app.py, which starts `{first_line}`. Changed: {changed}.",
            "status": "done", "diagnosis": None, "next_step_hint": None}))
    """,
}


@dataclass
class Stage:
    intake: Intake
    remote: Path
    defs: dg.Definitions
    state: GitHubState
    store: PlatformStore

    def trigger(self, sensor: dg.SensorDefinition = github_issue_labels_sensor) -> list[dg.RunRequest]:
        return list(self.intake.tick(sensor).run_requests or [])

    def execute(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        job = self.defs.resolve_job_def(request.job_name or "")
        return job.execute_in_process(run_config=request.run_config, tags=request.tags, raise_on_error=False)

    def branches(self) -> list[str]:
        out = git("--git-dir", str(self.remote), "for-each-ref", "--format=%(refname:short)", "refs/heads")
        return sorted(out.split())

    def log(self, branch: str) -> list[str]:
        return git("--git-dir", str(self.remote), "log", "--format=%s", branch).splitlines()


@pytest.fixture
def stage(
    github_server: GitHubServer,  # noqa: F811
    store: PlatformStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stage]:
    remote = tmp_path / "remote.git"
    seed = tmp_path / "seed"
    git("init", "--bare", "-b", "main", str(remote))
    git("init", "-b", "main", str(seed))
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("def checkout(cart):\n    return sum(cart)\n")
    (seed / "README.md").write_text("# shop\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=seed", "-c", "user.email=seed@example.com", "commit", "-m", "seed", cwd=seed)
    git("push", str(remote), "main", cwd=seed)

    scripts = tmp_path / "agents"
    scripts.mkdir()
    for name, body in AGENTS.items():
        (scripts / name).write_text(textwrap.dedent(body))
    catalog = tmp_path / "agents.yaml"
    catalog.write_text(
        "agents:\n"
        f"  dev:\n    command: ['{sys.executable}', '{scripts / 'dev_agent.py'}', '{{workdir}}']\n"
        f"  em:\n    command: ['{sys.executable}', '{scripts / 'code_in_doc_stage.py'}', '{{workdir}}']\n"
        f"  reviewer:\n    command: ['{sys.executable}', '{scripts / 'reviewer_agent.py'}', '{{workdir}}']\n"
    )
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"repositories:\n  - github: {REPO}\n    git_url: {remote}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(catalog))
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("CODEXK8S_GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    monkeypatch.setenv("CODEXK8S_MCP_SECRET", "test-mcp-secret-" + "x" * 24)
    state = github_server.state
    state.add_repo(REPO, collaborators={"alice": "write", "bob": "maintain"})
    intake = Intake(github_server, store, state, {})
    defs = build_definitions(Environment.LOCAL)
    yield Stage(intake, remote, defs, state, store)


__all__ = ["REPO", "Stage", "github_pull_requests_sensor"]
