"""The runner end to end: a real bare remote, scripted agents, the runner as a subprocess (and once under Pipes)."""

import base64
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from dagster import DagsterInstance, OpExecutionContext, PipesSubprocessClient, job, op
from pydantic import ValidationError

from codexk8s_pipelines.agents.k8s_runtime import _pipes_payloads
from codexk8s_pipelines.agents.runner import RESULT_FILE_MAX_BYTES, exit_code_for, read_agent_report
from codexk8s_pipelines.agents.runner_spec import RunnerSpec, SpecError, load_spec

from .test_git_workspace import git, make_remote, push_branch, remote_file, remote_head, remote_log

REPO_ROOT = Path(__file__).resolve().parents[2]
BRANCH = "codex/issue-12"
AUTHOR = ("codex-bot", "codex-bot@example.com")

# For attack scripts: git as a stranger (its own identity), committing everything, or a nested repository (a gitlink).
GIT_PRELUDE = """\
import os, subprocess
GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x",
           "GIT_COMMITTER_EMAIL": "x@x"}

def commit_all(message, cwd=None):
    subprocess.run(["git", "add", "-A"], cwd=cwd, env=GIT_ENV)
    subprocess.run(["git", "commit", "-qm", message], cwd=cwd, env=GIT_ENV)

def make_submodule(path):
    path.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    (path / "x").write_text("x")
    subprocess.run(["git", "add", "x"], cwd=path, check=True, env=GIT_ENV)
    subprocess.run(["git", "commit", "-qm", "x"], cwd=path, check=True, env=GIT_ENV)
"""

AGENT_PRELUDE = (
    GIT_PRELUDE
    + """\
import json, os, pathlib, subprocess, sys, time
ROOT = pathlib.Path.cwd()
PROMPT = sys.stdin.read()

def write(path, text):
    p = ROOT / path
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)

def result(**fields):
    write(".codexk8s/result.json", json.dumps(fields))
"""
)


def make_agent(tmp_path: Path, body: str, name: str = "agent.py") -> list[str]:
    """A scripted agent: the prelude (reads the prompt from stdin) followed by `body`."""
    script = tmp_path / name
    script.write_text(AGENT_PRELUDE + textwrap.dedent(body))
    return [sys.executable, str(script)]


def make_spec(tmp_path: Path, remote: Path | str, command: list[str], **overrides: Any) -> Path:
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Fix issue 12: say goodbye.\n")
    spec: dict[str, Any] = {
        "remote_url": str(remote),
        "branch": BRANCH,
        "mode": "work",
        "workdir": str(tmp_path / "workdir"),
        "command": command,
        "prompt_file": str(prompt),
        "write_scope": "any-file",
        "commit_message": "codex: issue 12",
        "author_name": AUTHOR[0],
        "author_email": AUTHOR[1],
        "timeout_seconds": 60,
        "git_timeout_seconds": 20,
    }
    spec.update(overrides)
    path = tmp_path / f"spec-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    return path


def runner_cmd(spec: Path, result: Path) -> list[str]:
    return [sys.executable, "-m", "codexk8s_pipelines.agents.runner", "--spec", str(spec), "--result", str(result)]


def run_runner(
    spec: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = tmp_path / f"result-{time.monotonic_ns()}.json"
    proc = subprocess.run(
        runner_cmd(spec, result),
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.exists(), proc.stdout + proc.stderr
    return proc, json.loads(result.read_text())


def agent_processes(marker: str) -> list[psutil.Process]:
    """Live host processes whose command line names `marker` (e.g. the agent script's path). Inside the sandbox
    an agent only knows its namespace PIDs, so the test finds its processes from outside, by command line."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and marker in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_for(path: Path, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


EDIT_CODE = """\
write("src/app.py", "print('goodbye')\\n")
write("docs/prompt-seen.md", PROMPT)
result(summary="Said goodbye", status="done", diagnosis=None, next_step_hint="review the PR")
"""


# ------------------------------------------------------------------------------------------------ work / revise


def test_work_mode_pushes_one_commit_by_the_author(remote: Path, tmp_path: Path) -> None:
    proc, result = run_runner(make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE)), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["status"] == "succeeded" and result["reason"] == "pushed" and result["pushed"]
    assert result["summary"] == "Said goodbye" and result["next_step_hint"] == "review the PR"
    assert result["changed_files"] == ["docs/prompt-seen.md", "src/app.py"]
    log = remote_log(remote, BRANCH)
    assert len(log) == 2
    assert log[0] == f"{result['commit']} codex-bot <codex-bot@example.com> codex: issue 12"
    assert remote_file(remote, BRANCH, "src/app.py") == "print('goodbye')\n"
    assert remote_file(remote, BRANCH, "docs/prompt-seen.md") == "Fix issue 12: say goodbye.\n"
    files = subprocess.run(
        ["git", f"--git-dir={remote}", "ls-tree", "-r", "--name-only", f"refs/heads/{BRANCH}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ".codexk8s/result.json" not in files
    assert "[agent:stderr]" not in proc.stdout
    assert "[runner] pushed:" in proc.stdout


def test_markdown_only_scope_rejects_code_edit(remote: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), write_scope="markdown-only")
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 2
    assert result["status"] == "failed_precondition" and result["reason"] == "write_scope_violation"
    assert result["violations"] == ["src/app.py"] and not result["pushed"] and result["commit"] is None
    assert remote_head(remote, BRANCH) is None


def test_markdown_only_scope_rejection_leaves_existing_branch_unchanged(remote: Path, tmp_path: Path) -> None:
    before = push_branch(remote, tmp_path, BRANCH, "docs/a.md", "a\n")
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), write_scope="markdown-only", mode="revise")
    proc, result = run_runner(spec, tmp_path)
    assert (proc.returncode, result["reason"]) == (2, "write_scope_violation")
    assert remote_head(remote, BRANCH) == before


def test_revise_without_branch_is_failed_precondition(remote: Path, tmp_path: Path) -> None:
    proc, result = run_runner(make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), mode="revise"), tmp_path)
    assert proc.returncode == 2
    assert (result["status"], result["reason"]) == ("failed_precondition", "branch_not_found")
    assert remote_head(remote, BRANCH) is None


def test_revise_adds_a_commit_on_top_of_the_branch(remote: Path, tmp_path: Path) -> None:
    before = push_branch(remote, tmp_path, BRANCH, "docs/a.md", "a\n")
    agent = make_agent(tmp_path, 'write("docs/a.md", "a, revised\\n")\nresult(summary="revised")\n')
    proc, result = run_runner(make_spec(tmp_path, remote, agent, mode="revise"), tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert result["changed_files"] == ["docs/a.md"]
    parents = remote_log(remote, BRANCH, "%H %P")
    assert parents[0] == f"{result['commit']} {before}"
    assert remote_file(remote, BRANCH, "docs/a.md") == "a, revised\n"


# The agent edits once the test says so: meanwhile a human pushes to the branch (`.codexk8s` is never committed).
EDIT_WHEN_TOLD = """\
write(".codexk8s/started", "yes")
deadline = time.monotonic() + 60
while not (ROOT / ".codexk8s" / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
write("src/app.py", "print('agent')\\n")
result(summary="agent edit", status="done")
"""


def human_push(bare: Path, tmp_path: Path, branch: str, path: str, text: str) -> str:
    """A person's commit on `branch` (made from main when the remote has no such branch), pushed; its SHA."""
    clone = tmp_path / f"human-{time.monotonic_ns()}"
    git("clone", "--quiet", str(bare), str(clone))
    exists = remote_head(bare, branch) is not None
    git("checkout", "--quiet", *([branch] if exists else ["-b", branch]), cwd=clone)
    (clone / path).write_text(text)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "a human's commit", cwd=clone)
    git("push", "--quiet", "origin", branch, cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def _run_while_a_human_pushes(tmp_path: Path, remote: Path, **spec_fields: Any) -> tuple[int, dict[str, Any], str]:
    """Run the runner with an agent that edits once told, push a human's commit to the branch while the agent works,
    then tell it: (the runner's exit code, its result, the human's commit)."""
    result_path = tmp_path / "result.json"
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_WHEN_TOLD), **spec_fields)
    runner = subprocess.Popen(
        runner_cmd(spec, result_path), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(tmp_path / "workdir" / ".codexk8s" / "started")
    human = human_push(remote, tmp_path, BRANCH, "human.txt", "mine\n")
    (tmp_path / "workdir" / ".codexk8s" / "go").write_text("go")
    out, err = runner.communicate(timeout=90)
    assert result_path.is_file(), out + err
    return runner.returncode, json.loads(result_path.read_text()), human


@pytest.mark.parametrize("existing", [True, False], ids=["existing-branch", "new-branch"])
def test_a_branch_a_human_pushed_to_while_the_agent_worked_is_kept_and_named(
    remote: Path, tmp_path: Path, existing: bool
) -> None:
    """Someone pushes to codex/issue-12 while the agent works. Before, the run failed as `push_failed` with git's
    hint ("Updates were rejected ... 'git pull ...'") naming a commit that exists only in the runner's private git
    directory, and the runbook said to check the App's permissions; now it is `branch_moved`, naming the branch's
    new head (the human's commit, kept) and saying to put the label back."""
    if existing:
        push_branch(remote, tmp_path, BRANCH, "docs/a.md", "a\n")
    returncode, result, human = _run_while_a_human_pushes(tmp_path, remote)
    assert (returncode, result["status"], result["reason"]) == (1, "failed", "branch_moved"), result
    assert remote_head(remote, BRANCH) == human and not result["pushed"]
    message = result["message"]
    assert f"now at {human[:12]}" in message and "nothing on the remote was overwritten" in message
    assert "run label" in message
    assert "git pull" not in message and result["commit"][:12] not in message


# ------------------------------------------------------------------------------------------------ after a merged PR


def merged_branch(bare: Path, tmp_path: Path, number: int = 7, merged: bool = True) -> str:
    """codex/issue-12 with an earlier run's commit, whose PR #`number` was squash-merged into main (or closed without
    merging): GitHub keeps the PR's head at refs/pull/N/head and (by default) the branch; main moves on. Returns the
    branch's head."""
    head = push_branch(bare, tmp_path, BRANCH, "docs/a.md", "a\n")
    git(f"--git-dir={bare}", "update-ref", f"refs/pull/{number}/head", head)
    if not merged:
        return head
    tree = git(f"--git-dir={bare}", "rev-parse", f"{head}^{{tree}}").strip()
    squash = git(f"--git-dir={bare}", "commit-tree", tree, "-p", "main", "-m", f"squash (#{number})").strip()
    git(f"--git-dir={bare}", "update-ref", "refs/heads/main", squash)
    return head


def test_a_branch_whose_pull_request_was_merged_starts_again_from_main(remote: Path, tmp_path: Path) -> None:
    """The push replaces the branch's old head, kept at refs/pull/7/head, under a lease on exactly that commit."""
    old = merged_branch(remote, tmp_path)
    main = remote_head(remote, "main")
    closed = {"number": 7, "merged": True}
    proc, result = run_runner(
        make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), closed_pull=closed), tmp_path
    )
    assert (proc.returncode, result["reason"]) == (0, "pushed"), result["message"]
    assert remote_log(remote, BRANCH, "%H %P")[0] == f"{result['commit']} {main}"  # on main, not on the old commits
    assert result["changed_files"] == ["docs/prompt-seen.md", "src/app.py"]  # judged against main
    assert result["replaced_head"] == old and f"in place of its former head {old[:12]}" in result["message"]
    assert "pull request #7 was merged: codex/issue-12 starts again from origin/main" in proc.stdout
    assert git(f"--git-dir={remote}", "rev-parse", "refs/pull/7/head").strip() == old


def test_a_branch_whose_pull_request_was_merged_and_deleted_starts_from_main(remote: Path, tmp_path: Path) -> None:
    merged_branch(remote, tmp_path)
    git(f"--git-dir={remote}", "update-ref", "-d", f"refs/heads/{BRANCH}")  # "delete head branches" is on
    closed = {"number": 7, "merged": True}
    proc, result = run_runner(
        make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), closed_pull=closed), tmp_path
    )
    assert (proc.returncode, result["reason"], result["replaced_head"]) == (0, "pushed", None)
    assert remote_log(remote, BRANCH, "%P")[0] == remote_head(remote, "main")


def test_a_branch_pushed_to_during_a_run_after_the_merge_is_never_overwritten(remote: Path, tmp_path: Path) -> None:
    """The lease is on the head the run saw: a human's push while the agent works fails the push, never is lost."""
    merged_branch(remote, tmp_path)
    _, result, human = _run_while_a_human_pushes(tmp_path, remote, closed_pull={"number": 7})
    assert (result["status"], result["reason"]) == ("failed", "branch_moved"), result
    assert remote_head(remote, BRANCH) == human and f"now at {human[:12]}" in result["message"]
    assert "Open a pull request from 'codex/issue-12' to go on with it, or delete the branch" in result["message"]


def test_a_branch_pushed_to_after_the_merge_is_a_precondition(remote: Path, tmp_path: Path) -> None:
    merged_branch(remote, tmp_path)
    human = human_push(remote, tmp_path, BRANCH, "human.txt", "mine\n")
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), closed_pull={"number": 7, "merged": True})
    proc, result = run_runner(spec, tmp_path)
    assert (proc.returncode, result["reason"]) == (2, "branch_moved_after_pr_closed")
    assert f"is at {human[:12]}, not at the head of its closed pull request #7" in result["message"]
    assert remote_head(remote, BRANCH) == human


def test_a_revise_of_a_merged_pull_request_is_a_precondition(remote: Path, tmp_path: Path) -> None:
    old = merged_branch(remote, tmp_path)
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), mode="revise", closed_pull={"number": 7})
    proc, result = run_runner(spec, tmp_path)
    assert (proc.returncode, result["reason"]) == (2, "pull_request_closed")
    assert "pull request #7 of branch 'codex/issue-12' is merged or closed" in result["message"]
    assert remote_head(remote, BRANCH) == old


def test_a_discussion_after_the_pull_request_was_closed_reads_main(remote: Path, tmp_path: Path) -> None:
    old = merged_branch(remote, tmp_path, merged=False)
    body = 'result(summary="sees " + ("the old branch" if (ROOT / "docs/a.md").exists() else "main"))\n'
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, body), mode="comment_only", closed_pull={"number": 7})
    proc, result = run_runner(spec, tmp_path)
    assert (proc.returncode, result["summary"], result["pushed"]) == (0, "sees main", False), result["message"]
    assert remote_head(remote, BRANCH) == old


def test_the_pod_steps_carry_the_lease_from_the_checkout_to_the_push(remote: Path, tmp_path: Path) -> None:
    old = merged_branch(remote, tmp_path)
    spec = make_spec(
        tmp_path, remote, make_agent(tmp_path, EDIT_CODE), closed_pull={"number": 7}, git_dir=str(tmp_path / "g")
    )
    for phase in ("prepare", "agent"):
        assert _phase(spec, tmp_path, phase, {})[0] == 0
    code, finished = _phase(spec, tmp_path, "finish", {})
    assert (code, finished["reason"], finished["replaced_head"]) == (0, "pushed", old)
    assert remote_log(remote, BRANCH, "%P")[0] == remote_head(remote, "main")


def test_no_changes_succeeds_without_pushing(remote: Path, tmp_path: Path) -> None:
    proc, result = run_runner(
        make_spec(tmp_path, remote, make_agent(tmp_path, 'result(summary="nothing")\n')), tmp_path
    )
    assert proc.returncode == 0
    assert (result["status"], result["reason"], result["pushed"]) == ("succeeded", "no_changes", False)
    assert remote_head(remote, BRANCH) is None


def test_agent_commits_and_hooks_are_squashed_and_ignored(remote: Path, tmp_path: Path) -> None:
    marker = tmp_path / "hook-ran"
    body = f"""\
    write("notes.md", "n\\n")
    hook = ROOT / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\\ntouch {marker}\\n")
    hook.chmod(0o755)
    subprocess.run(["git", "config", "core.hooksPath", ".git/hooks"], check=True)
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=Agent", "-c", "user.email=a@x", "commit", "-qm", "mine"], check=True)
    result(summary="committed myself")
    """
    proc, result = run_runner(make_spec(tmp_path, remote, make_agent(tmp_path, body)), tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert remote_log(remote, BRANCH, "%H %an")[0] == f"{result['commit']} codex-bot"
    assert len(remote_log(remote, BRANCH)) == 2
    assert not marker.exists()


def test_missing_or_invalid_result_file_is_a_diagnosis_not_a_crash(remote: Path, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, 'write("docs/x.md", "x\\n")\n')
    proc, result = run_runner(make_spec(tmp_path, remote, agent), tmp_path)
    assert proc.returncode == 0
    assert result["summary"] is None and "no result file" in result["diagnosis"]

    agent = make_agent(tmp_path, 'write(".codexk8s/result.json", "{not json")\n', name="bad.py")
    proc, result = run_runner(make_spec(tmp_path, remote, agent, workdir=str(tmp_path / "wd2")), tmp_path)
    assert result["summary"] is None and "not valid JSON" in result["diagnosis"]


# ------------------------------------------------------------------------------------------------ Git LFS

LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 2048\n"


def lfs_remote(tmp_path: Path) -> Path:
    """A repository that keeps its images in Git LFS (`*.png`, and `*.bin` under assets/ by a nested file): in git,
    only pointers."""
    bare = make_remote(tmp_path)
    clone = tmp_path / "lfs-seed"
    git("clone", "--quiet", str(bare), str(clone))
    (clone / ".gitattributes").write_text("*.png filter=lfs diff=lfs merge=lfs -text\n")
    (clone / "assets").mkdir()
    (clone / "assets" / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (clone / "logo.png").write_text(LFS_POINTER)
    (clone / "assets" / "model.bin").write_text(LFS_POINTER)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "images in LFS", cwd=clone)
    git("push", "--quiet", "origin", "main", cwd=clone)
    return bare


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        # The agent regenerates the logo: before, 200,008 bytes went to GitHub as a plain blob at a filter=lfs path.
        ('open("logo.png", "wb").write(b"\\x89PNG\\r\\n\\x1a\\n" + os.urandom(200000))\n', ["logo.png"]),
        # ... and takes the LFS rule out in the same commit: the start tree's attributes still hold.
        ('open("logo.png", "wb").write(os.urandom(5000))\nwrite(".gitattributes", "")\n', ["logo.png"]),
        # A new file under the nested rule, and one under a rule the agent brings in itself.
        (
            'open("assets/new.bin", "wb").write(os.urandom(64))\n'
            'write(".gitattributes", "*.png filter=lfs\\n*.dat filter=lfs\\n")\n'
            'open("data.dat", "wb").write(os.urandom(64))\n',
            ["assets/new.bin", "data.dat"],
        ),
    ],
    ids=["rewritten", "rule-taken-out", "new-files"],
)
def test_a_file_git_stores_in_lfs_is_never_pushed_as_a_plain_blob(
    tmp_path: Path, body: str, refused: list[str]
) -> None:
    bare = lfs_remote(tmp_path)
    agent = make_agent(tmp_path, body + 'write("src/app.py", "print(1)\\n")\nresult(summary="new logo")\n')
    proc, result = run_runner(make_spec(tmp_path, bare, agent), tmp_path)
    assert (proc.returncode, result["reason"]) == (2, "write_scope_violation"), result["message"]
    assert result["violations"] == refused and not result["pushed"]
    assert all("tracked with Git LFS (filter=lfs" in rule for rule in result["violation_rules"])
    assert refused[0] in result["message"] and "not an LFS pointer" in result["message"]
    assert remote_head(bare, BRANCH) is None


def test_an_lfs_pointer_the_agent_updates_and_other_files_are_pushed(tmp_path: Path) -> None:
    bare = lfs_remote(tmp_path)
    pointer = LFS_POINTER.replace("a" * 64, "b" * 64)
    body = f"write('logo.png', {pointer!r})\nopen('photo.jpg', 'wb').write(os.urandom(64))\nresult(summary='ok')\n"
    proc, result = run_runner(make_spec(tmp_path, bare, make_agent(tmp_path, body)), tmp_path)
    assert (proc.returncode, result["reason"]) == (0, "pushed"), result["message"]
    assert result["changed_files"] == ["logo.png", "photo.jpg"]
    assert remote_file(bare, BRANCH, "logo.png") == pointer


# ------------------------------------------------------------------------------------------------ comment_only


def test_comment_only_without_changes_succeeds_and_pushes_nothing(remote: Path, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, 'result(summary="Looks fine", diagnosis="root cause: none")\n')
    proc, result = run_runner(make_spec(tmp_path, remote, agent, mode="comment_only"), tmp_path)
    assert proc.returncode == 0
    assert (result["status"], result["pushed"], result["diagnosis"]) == ("succeeded", False, "root cause: none")
    assert remote_head(remote, BRANCH) is None


def test_comment_only_with_a_change_is_a_violation(remote: Path, tmp_path: Path) -> None:
    agent = make_agent(tmp_path, 'write("README.md", "changed\\n")\nresult(summary="oops")\n')
    proc, result = run_runner(make_spec(tmp_path, remote, agent, mode="comment_only"), tmp_path)
    assert proc.returncode == 2
    assert result["reason"] == "write_scope_violation" and result["violations"] == ["README.md"]
    assert remote_head(remote, BRANCH) is None and remote_log(remote, "main") == remote_log(remote, "main")[:1]


def push_pull_head(bare: Path, tmp_path: Path, number: int, path: str, text: str) -> str:
    """A fork's PR as GitHub keeps it in the base repository: a commit at `refs/pull/N/head`, on no branch."""
    clone = tmp_path / f"fork-{number}"
    git("clone", "--quiet", str(bare), str(clone))
    (clone / path).write_text(text)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", "from the fork", cwd=clone)
    git("push", "--quiet", "origin", f"HEAD:refs/pull/{number}/head", cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


def test_comment_only_of_a_forks_pull_request_reads_its_head_and_writes_nothing(remote: Path, tmp_path: Path) -> None:
    """A fork's PR has no branch here; its head is read from refs/pull/N/head, and nothing is written back: a change
    is a violation, and no branch or ref of the remote moves."""
    head = push_pull_head(remote, tmp_path, 7, "src/app.py", "print('from the fork')\n")
    refs_before = git(f"--git-dir={remote}", "for-each-ref")
    reader = make_agent(  # reads the fork's file, and the PR's changes against the base branch
        tmp_path,
        'diff = ["git", "diff", "--name-only", "origin/main...HEAD"]\n'
        "changed = subprocess.run(diff, capture_output=True, text=True)\n"
        'result(summary=(ROOT / "src/app.py").read_text().strip() + " | " + changed.stdout.strip() + changed.stderr)\n',
        name="reader.py",
    )
    spec = make_spec(tmp_path, remote, reader, mode="comment_only", branch="codex/pr-7", pull_ref="refs/pull/7/head")
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = "print('from the fork') | src/app.py"
    assert (result["status"], result["summary"], result["pushed"]) == ("succeeded", summary, False)
    assert f"codex/pr-7 at {head[:12]} from origin/pull/7/head" in proc.stdout

    writer = make_agent(tmp_path, 'write("src/app.py", "changed\\n")\nresult(summary="fixed it")\n', name="w.py")
    spec = make_spec(tmp_path, remote, writer, mode="comment_only", branch="codex/pr-7", pull_ref="refs/pull/7/head")
    proc, result = run_runner(spec, tmp_path)
    assert (proc.returncode, result["reason"], result["violations"]) == (2, "write_scope_violation", ["src/app.py"])
    assert git(f"--git-dir={remote}", "for-each-ref") == refs_before

    spec = make_spec(tmp_path, remote, reader, mode="comment_only", branch="codex/pr-8", pull_ref="refs/pull/8/head")
    proc, result = run_runner(spec, tmp_path)
    assert (result["status"], result["reason"]) == ("failed_precondition", "branch_not_found")
    assert "the pull request's head 'refs/pull/8/head' is not on the remote" in result["message"]


def test_comment_only_of_a_pull_request_whose_branch_was_deleted_reads_its_head(remote: Path, tmp_path: Path) -> None:
    """A PR of this repository whose branch was deleted (merged and cleaned up, say): with pull_ref_fallback its head
    is read from refs/pull/N/head, as a fork's is; before, the run started on the base branch, without origin/main
    beside it, and a reviewer reviewed main for the PR. While the branch exists it is read, not the pull ref (which
    GitHub moves a moment after a push). Nothing is written either way."""
    head = push_branch(remote, tmp_path, "feature/cart", "src/app.py", "print('from the branch')\n")
    main = remote_head(remote, "main")
    git(f"--git-dir={remote}", "update-ref", "refs/pull/9/head", main or "")  # not yet moved to the branch's push
    reader = make_agent(  # reads the PR's file, and its changes against the base branch
        tmp_path,
        'diff = ["git", "diff", "--name-only", "origin/main...HEAD"]\n'
        "changed = subprocess.run(diff, capture_output=True, text=True)\n"
        'result(summary=(ROOT / "src/app.py").read_text().strip() + " | " + changed.stdout.strip() + changed.stderr)\n',
        name="reader.py",
    )
    fallback = {"mode": "comment_only", "branch": "feature/cart", "pull_ref_fallback": True}
    spec = make_spec(tmp_path, remote, reader, **fallback, pull_ref="refs/pull/9/head")
    proc, result = run_runner(spec, tmp_path)
    assert (result["status"], result["summary"]) == ("succeeded", "print('from the branch') | src/app.py"), result
    assert f"feature/cart at {head[:12]} from origin/feature/cart" in proc.stdout

    git(f"--git-dir={remote}", "update-ref", "refs/pull/9/head", head)
    git(f"--git-dir={remote}", "update-ref", "-d", "refs/heads/feature/cart")
    refs_before = git(f"--git-dir={remote}", "for-each-ref")
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = "print('from the branch') | src/app.py"  # the PR's code and its change, not main against itself
    assert (result["status"], result["summary"], result["pushed"]) == ("succeeded", summary, False)
    assert f"feature/cart at {head[:12]} from origin/pull/9/head" in proc.stdout

    writer = make_agent(tmp_path, 'write("src/app.py", "changed\\n")\nresult(summary="fixed it")\n', name="w.py")
    proc, result = run_runner(make_spec(tmp_path, remote, writer, **fallback, pull_ref="refs/pull/9/head"), tmp_path)
    assert (proc.returncode, result["reason"], result["violations"]) == (2, "write_scope_violation", ["src/app.py"])
    assert git(f"--git-dir={remote}", "for-each-ref") == refs_before

    proc, result = run_runner(make_spec(tmp_path, remote, reader, **fallback, pull_ref="refs/pull/10/head"), tmp_path)
    assert (result["status"], result["reason"]) == ("failed_precondition", "branch_not_found")  # never main instead
    gone = "branch 'feature/cart' is gone from the remote, and the pull request's head 'refs/pull/10/head' is not"
    assert gone in result["message"]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"mode": "work", "pull_ref": "refs/pull/7/head"}, "only a comment-only run reads a pull request's head"),
        ({"mode": "revise", "pull_ref": "refs/pull/7/head"}, "only a comment-only run reads a pull request's head"),
        ({"mode": "comment_only", "pull_ref": "refs/heads/main"}, "pull_ref"),
        ({"mode": "comment_only", "pull_ref": "refs/pull/7/head:refs/heads/main"}, "pull_ref"),
        ({"mode": "comment_only", "pull_ref": "refs/pull/0/head"}, "pull_ref"),
        ({"mode": "comment_only", "pull_ref_fallback": True}, "pull_ref_fallback: no pull_ref to fall back to"),
        ({"mode": "comment_only", "pull_ref": "refs/pull/7/head", "closed_pull": {"number": 7}}, "not both"),
        ({"mode": "work", "closed_pull": {"number": 0}}, "closed_pull.number"),
    ],
)
def test_a_pull_ref_is_only_read_and_only_a_pull_requests_head(overrides: dict[str, object], error: str) -> None:
    base = {
        "remote_url": "/x.git", "branch": "codex/pr-7", "workdir": "/w", "command": ["a"], "prompt_file": "/p",
        "write_scope": "none", "commit_message": "m", "author_name": "a", "author_email": "a@b",
    }  # fmt: skip
    with pytest.raises(ValidationError, match=re.escape(error)):
        RunnerSpec.model_validate({**base, **overrides})


def test_the_default_branch_is_never_pushed_to_by_any_of_its_names() -> None:
    """Renamed on GitHub (main -> trunk) with codexk8s.yaml unchanged: the run's default branch is the configured
    `main`, GitHub's `trunk` comes as a protected name, and a revise of a PR whose head is `trunk` is refused."""
    base = {
        "remote_url": "/x.git", "workdir": "/w", "command": ["a"], "prompt_file": "/p", "write_scope": "any-file",
        "commit_message": "m", "author_name": "a", "author_email": "a@b", "base_branch": "release",
        "default_branch": "main", "protected_branches": ["main", "trunk"],
    }  # fmt: skip
    for branch in ("main", "trunk"):
        with pytest.raises(ValidationError, match=re.escape(f"branch {branch!r} is the repository's default branch")):
            RunnerSpec.model_validate({**base, "branch": branch, "mode": "revise"})
    assert RunnerSpec.model_validate({**base, "branch": "trunk", "mode": "comment_only"}).branch == "trunk"  # read only
    assert RunnerSpec.model_validate({**base, "branch": "codex/issue-1", "mode": "revise"}).branch == "codex/issue-1"


# ------------------------------------------------------------------------------------------------ failures


def test_agent_nonzero_exit_fails_and_pushes_nothing(remote: Path, tmp_path: Path) -> None:
    body = 'write("src/app.py", "x\\n")\nresult(diagnosis="tests fail")\nprint("boom", file=sys.stderr)\nsys.exit(3)\n'
    proc, result = run_runner(make_spec(tmp_path, remote, make_agent(tmp_path, body)), tmp_path)
    assert proc.returncode == 1
    assert (result["status"], result["reason"], result["agent_exit_code"]) == ("failed", "agent_exit_code", 3)
    assert result["diagnosis"] == "tests fail" and "boom" in result["message"]
    assert "[agent:stderr] boom" in proc.stdout
    assert remote_head(remote, BRANCH) is None


def test_missing_agent_executable(remote: Path, tmp_path: Path) -> None:
    proc, result = run_runner(make_spec(tmp_path, remote, ["/nonexistent/agent-binary"]), tmp_path)
    assert (proc.returncode, result["reason"]) == (1, "agent_not_found")


SPAWNING_AGENT = """\
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", sys.argv[0]])
write("docs/late.md", "never pushed\\n")
write(".codexk8s/pids.txt", f"{os.getpid()} {child.pid}")
print("working", flush=True)
time.sleep(300)
"""


def test_timeout_kills_the_agent_process_group(remote: Path, tmp_path: Path) -> None:
    command = make_agent(tmp_path, SPAWNING_AGENT)
    spec = make_spec(tmp_path, remote, command, timeout_seconds=3)
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 1
    assert (result["status"], result["reason"]) == ("timed_out", "agent_timeout")
    assert "[agent] working" in proc.stdout
    assert (tmp_path / "workdir" / ".codexk8s" / "pids.txt").exists()
    assert agent_processes(command[1]) == []
    assert remote_head(remote, BRANCH) is None


def test_sigterm_cancels_and_kills_the_agent_group(remote: Path, tmp_path: Path) -> None:
    result_path = tmp_path / "result.json"
    command = make_agent(tmp_path, SPAWNING_AGENT)
    spec = make_spec(tmp_path, remote, command)
    runner = subprocess.Popen(
        runner_cmd(spec, result_path), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(tmp_path / "workdir" / ".codexk8s" / "pids.txt")
    seen = [p for p in agent_processes(command[1]) if p.name() != "bwrap"]
    assert len(seen) == 2  # the agent and its child, seen from outside
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 1, out + err
    result = json.loads(result_path.read_text())
    assert (result["status"], result["reason"]) == ("cancelled", "cancelled")
    assert "SIGTERM" in result["message"]
    assert agent_processes(command[1]) == []
    assert remote_head(remote, BRANCH) is None


def test_invalid_spec_is_failed_precondition(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"remote_url": "x", "branch": "-rf", "surprise": 1}))
    proc, result = run_runner(spec, tmp_path)
    assert proc.returncode == 2
    assert result["reason"] == "invalid_spec"
    assert "surprise" in result["message"] and "branch" in result["message"]


def test_load_spec_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": ')
    with pytest.raises(SpecError, match=r"not valid JSON.*line 1"):
        load_spec(bad)
    bad.write_text("[]")
    with pytest.raises(SpecError, match="JSON object"):
        load_spec(bad)


def test_exit_codes() -> None:
    assert [exit_code_for(s) for s in ("succeeded", "failed_precondition", "failed", "timed_out", "cancelled")] == [
        0,
        2,
        1,
        1,
        1,
    ]


# ------------------------------------------------------------------------------------------------ workspace reuse


def test_reuse_of_a_dirty_workdir(remote: Path, tmp_path: Path) -> None:
    proc, first = run_runner(make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE)), tmp_path)
    assert proc.returncode == 0
    workdir = tmp_path / "workdir"
    (workdir / "README.md").write_text("leftover edit\n")
    (workdir / "leftover.txt").write_text("junk\n")
    (workdir / ".git" / "index.lock").write_text("")
    agent = make_agent(tmp_path, 'write("docs/second.md", "second\\n")\nresult(summary="second")\n', name="a2.py")
    proc, second = run_runner(make_spec(tmp_path, remote, agent), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert second["changed_files"] == ["docs/second.md"]
    assert remote_log(remote, BRANCH, "%H")[:2] == [second["commit"], first["commit"]]
    assert remote_file(remote, BRANCH, "README.md") == "# demo\n"


SLOW_REVISE = """\
write("src/feature.py", "def feature():\\n    return 42\\n")  # the agent's main work, early in its turn
write(".codexk8s/started", "yes")
deadline = time.monotonic() + 60
while not (ROOT / ".codexk8s" / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
write("src/app.py", "print('goodbye')\\n")
result(summary="feature and goodbye", status="done")
"""


def test_a_second_run_in_a_busy_workdir_stops_at_once_and_the_first_pushes_all_its_work(
    remote: Path, tmp_path: Path
) -> None:
    """Two runs of one branch in one folder (a revise of issue 12, a review of its PR): the reviewer's checkout
    emptied the folder in the middle of the revise's turn, and the revise pushed what was left (src/app.py only)
    as "succeeded". Now the second run stops before its checkout, naming the folder and the run that holds it."""
    push_branch(remote, tmp_path, BRANCH, "docs/plan.md", "plan\n")
    workdir = tmp_path / "shared-workdir"
    (tmp_path / "revise").mkdir()
    (tmp_path / "review").mkdir()
    dev = make_spec(tmp_path / "revise", remote, make_agent(tmp_path / "revise", SLOW_REVISE), mode="revise",
                    workdir=str(workdir))  # fmt: skip
    reviewer = make_agent(tmp_path / "review", 'result(summary="LGTM", status="done")\n')
    review = make_spec(tmp_path / "review", remote, reviewer, mode="comment_only", workdir=str(workdir))
    first = subprocess.Popen(
        runner_cmd(dev, tmp_path / "revise.json"), cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_for(workdir / ".codexk8s" / "started")
        proc, second = run_runner(review, tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert (second["status"], second["reason"]) == ("failed_precondition", "workdir_busy")
        assert str(workdir) in second["message"] and "revise of branch 'codex/issue-12'" in second["message"]
        assert f"runner pid {first.pid}" in second["message"]
        assert (workdir / "src" / "feature.py").is_file()  # left alone
    finally:
        (workdir / ".codexk8s").mkdir(parents=True, exist_ok=True)  # (gone with the folder, before)
        (workdir / ".codexk8s" / "go").write_text("go")
        first.communicate(timeout=120)
    result = json.loads((tmp_path / "revise.json").read_text())
    assert (result["status"], result["reason"]) == ("succeeded", "pushed")
    assert result["changed_files"] == ["src/app.py", "src/feature.py"]
    assert remote_file(remote, BRANCH, "src/feature.py") == "def feature():\n    return 42\n"

    proc, after = run_runner(review, tmp_path)  # the folder is free again once its run has ended
    assert proc.returncode == 0 and after["status"] == "succeeded", proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ secrets


class _HeaderRecorder(http.server.BaseHTTPRequestHandler):
    seen: list[str | None] = []  # noqa: RUF012 - class-level on purpose: the server instantiates per request

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def header_server() -> Iterator[tuple[str, list[str | None]]]:
    _HeaderRecorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HeaderRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/o/r.git", _HeaderRecorder.seen
    server.shutdown()


def test_agent_never_sees_the_token_that_the_runner_uses(
    remote: Path, tmp_path: Path, header_server: tuple[str, list[str | None]]
) -> None:
    token = "plain-secret-value-42"
    body = 'write("docs/env.md", "x\\n")\nwrite(".codexk8s/agent-env.json", json.dumps(dict(os.environ)))\n'
    secrets = {"CODEXK8S_GITHUB_TOKEN": token, "OTHER_TOKEN": "other", "MY_API_TOKEN": "mine"}
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, body), pass_env=["MY_API_TOKEN"])
    proc, result = run_runner(spec, tmp_path, env=secrets)
    assert proc.returncode == 0, proc.stdout
    seen = json.loads((tmp_path / "workdir" / ".codexk8s" / "agent-env.json").read_text())
    assert "CODEXK8S_GITHUB_TOKEN" not in seen and "OTHER_TOKEN" not in seen
    assert token not in json.dumps(seen)
    assert seen["MY_API_TOKEN"] == "mine" and seen["CODEXK8S_BRANCH"] == BRANCH

    # The runner itself did have it: git sent it as the auth header to the (recording) https-like remote.
    # Unredacted curl tracing in the environment would make git print the header: it must not reach the output.
    url, headers = header_server
    noisy = {**secrets, "GIT_CURL_VERBOSE": "1", "GIT_TRACE_REDACT": "0"}
    proc, result = run_runner(make_spec(tmp_path, url, ["true"], workdir=str(tmp_path / "wd-http")), tmp_path, noisy)
    assert (proc.returncode, result["reason"]) == (1, "workspace_error")
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert expected in headers
    assert token not in proc.stdout + proc.stderr + json.dumps(result)
    assert expected.split()[1] not in proc.stdout + proc.stderr + json.dumps(result)


def test_token_never_leaks_when_git_fails_on_https(tmp_path: Path) -> None:
    token = "ghp_" + "A1b2C3d4" * 5
    plain = "plain-secret-value-42"
    url = "https://127.0.0.1:9/x.git"
    for secret in (token, plain):
        spec = make_spec(tmp_path, url, ["true"], git_timeout_seconds=10)
        proc, result = run_runner(spec, tmp_path, env={"CODEXK8S_GITHUB_TOKEN": secret, "GIT_TRACE": "1"})
        assert proc.returncode == 1 and result["reason"] == "workspace_error"
        everything = proc.stdout + proc.stderr + json.dumps(result)
        assert secret not in everything
        assert base64.b64encode(f"x-access-token:{secret}".encode()).decode() not in everything


# ------------------------------------------------------------------------------------------------ Dagster Pipes


def test_runner_reports_through_dagster_pipes(remote: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE))

    @op
    def run_agent_op(context: OpExecutionContext) -> list:
        command = [sys.executable, "-m", "codexk8s_pipelines.agents.runner", "--spec", str(spec)]
        invocation = PipesSubprocessClient().run(command=command, context=context, cwd=str(REPO_ROOT))
        return list(invocation.get_custom_messages())

    @job
    def agent_job() -> None:
        run_agent_op()

    with DagsterInstance.ephemeral() as instance:
        outcome = agent_job.execute_in_process(instance=instance)
        assert outcome.success
        messages = outcome.output_for_node("run_agent_op")
        logs = [e.user_message for e in instance.all_logs(outcome.run_id)]

    phases = [m["phase"] for m in messages if m["type"] == "status"]
    assert phases == ["workspace_ready", "agent_started", "egress", "agent_finished", "scope_checked", "pushed"]
    final = messages[-1]
    assert final["type"] == "result" and final["status"] == "succeeded" and final["reason"] == "pushed"
    assert final["commit"] == remote_head(remote, BRANCH)
    assert any("[runner] pushed:" in line for line in logs)
    assert any("[runner] succeeded (pushed)" in line for line in logs)


# ------------------------------------------------------------------------------------------------ pod steps


def _phase(spec: Path, tmp_path: Path, phase: str, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    result = tmp_path / f"result-{phase}.json"
    proc = subprocess.run(
        [*runner_cmd(spec, result), "--phase", phase],
        cwd=REPO_ROOT,
        env={k: v for k, v in {**os.environ, **env}.items() if k != "CODEXK8S_GITHUB_TOKEN" or phase != "agent"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(result.read_text())


def test_the_three_pod_steps_prepare_agent_finish_push_what_was_verified(remote: Path, tmp_path: Path) -> None:
    """What the pod's containers run, in order: the checkout with the token, the agent without it (its own git
    sees nothing of the runner's), then verify-and-push with the token."""
    git_dir = tmp_path / "runner-volume" / "git"
    body = EDIT_CODE + 'write(".codexk8s/env.json", json.dumps(dict(os.environ)))\n'
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, body), git_dir=str(git_dir))
    env = {"CODEXK8S_GITHUB_TOKEN": "plain-secret-value-42"}

    code, prepared = _phase(spec, tmp_path, "prepare", env)
    assert (code, prepared["reason"]) == (0, "prepared") and (git_dir / "codexk8s-state.json").exists()
    assert remote_head(remote, BRANCH) is None
    code, ran = _phase(spec, tmp_path, "agent", env)
    assert (code, ran["reason"]) == (0, "agent_ran") and remote_head(remote, BRANCH) is None
    seen = json.loads((tmp_path / "workdir" / ".codexk8s" / "env.json").read_text())
    assert "CODEXK8S_GITHUB_TOKEN" not in seen
    code, finished = _phase(spec, tmp_path, "finish", env)
    assert code == 0 and (finished["status"], finished["reason"]) == ("succeeded", "pushed")
    assert finished["changed_files"] == ["docs/prompt-seen.md", "src/app.py"]
    assert remote_head(remote, BRANCH) == finished["commit"] and finished["summary"] == "Said goodbye"


def test_a_failed_checkout_step_is_reported_by_the_finish_step(remote: Path, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), mode="revise", git_dir=str(tmp_path / "g"))
    assert _phase(spec, tmp_path, "prepare", {})[0] == 0  # the pod goes on: the verdict travels to the last step
    assert _phase(spec, tmp_path, "agent", {})[1]["reason"] == "branch_not_found"
    code, finished = _phase(spec, tmp_path, "finish", {})
    assert (code, finished["status"], finished["reason"]) == (2, "failed_precondition", "branch_not_found")


def test_an_outcome_file_the_agents_container_nested_too_deep_is_no_outcome(remote: Path, tmp_path: Path) -> None:
    """The agent's container writes the outcome file, so the agent can write it: nesting too deep to decode raised
    out of the finish step (a RecursionError is not a ValueError), and the run ended as a crashed runner."""
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, EDIT_CODE), git_dir=str(tmp_path / "runner-volume" / "g"))
    assert _phase(spec, tmp_path, "prepare", {})[0] == 0
    assert _phase(spec, tmp_path, "agent", {})[1]["reason"] == "agent_ran"
    outcome = tmp_path / "agent-outcome.json"
    assert outcome.is_file()
    outcome.write_text('{"outcome": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    code, finished = _phase(spec, tmp_path, "finish", {})
    assert (finished["status"], finished["reason"]) == ("failed", "agent_no_outcome") and code != 0
    assert "nested too deeply" in finished["message"] and remote_head(remote, BRANCH) is None


def test_json_the_agent_nested_too_deep_is_a_bad_report_not_a_crash(tmp_path: Path) -> None:
    """The agent writes its result file, and its container's log lines: a RecursionError is not a ValueError."""
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / ".codexk8s").mkdir()
    (tmp_path / ".codexk8s" / "result.json").write_text('{"summary": ' + deep + "}", encoding="utf-8")
    report = read_agent_report(tmp_path, ".codexk8s/result.json")
    assert report.problem is not None and "not valid JSON" in report.problem and "nested too deeply" in report.problem
    message = {"__dagster_pipes_version": "0.1", "method": "report_custom_message", "params": {"payload": 1}}
    assert _pipes_payloads(['{"x": ' + deep + "}", json.dumps(message)]) == [1]  # the payload of the good line


def test_the_finish_step_refuses_to_push_a_secret_of_the_agent_and_redacts_it(remote: Path, tmp_path: Path) -> None:
    """In a pod the finish step gets the agent's secrets as CODEXK8S_AGENT_SECRET_<n> (its model key): a file the
    agent commits holding one is never pushed, in a file big enough to be searched by git grep too, and the summary
    that holds one is shown redacted."""
    key = "sk-proj-" + "k3y" * 12
    body = f"""\
write("src/app.py", "print('goodbye')\\n")
write("docs/small.md", "key: {key}\\n")
write("docs/big.txt", "x" * 2_000_000 + "{key}")
write("docs/{key}.md", "# named after the key\\n")
result(summary="my key is {key}", status="done", diagnosis=None, next_step_hint=None)
"""
    spec = make_spec(tmp_path, remote, make_agent(tmp_path, body), git_dir=str(tmp_path / "runner-volume" / "g"))
    assert _phase(spec, tmp_path, "prepare", {})[0] == 0
    assert _phase(spec, tmp_path, "agent", {})[1]["reason"] == "agent_ran"
    # A Secret made from a file ends in a newline: the key is kept out without it.
    code, finished = _phase(spec, tmp_path, "finish", {"CODEXK8S_AGENT_SECRET_0": key + "\n"})
    assert (code, finished["status"], finished["reason"]) == (2, "failed_precondition", "write_scope_violation")
    assert finished["violations"] == ["docs/big.txt", "docs/[redacted].md", "docs/small.md"]
    assert all("holds a secret of the run" in rule for rule in finished["violation_rules"])
    assert finished["summary"] == "my key is [redacted]" and key not in json.dumps(finished)
    assert remote_head(remote, BRANCH) is None


@pytest.mark.parametrize("kind", ["link", "fifo", "folder", "too large"])
def test_a_result_file_the_runner_must_not_read_is_a_bad_report_not_a_crash(tmp_path: Path, kind: str) -> None:
    """The agent makes its result file a link (to a file of the runner's), a FIFO (the read would hang), a folder
    or a huge file: the report says why it was not read, as for a file that is not JSON. A refusal escaping from
    here ended the whole run as `runner_error`, with no partial push and the agent's fault put on the platform."""
    result = tmp_path / ".codexk8s" / "result.json"
    result.parent.mkdir()
    if kind == "link":
        (tmp_path / "secret").write_text('{"summary": "the runner\'s file"}', encoding="utf-8")
        result.symlink_to(tmp_path / "secret")
    elif kind == "fifo":
        os.mkfifo(result)
    elif kind == "folder":
        result.mkdir()
    else:
        result.write_text('{"summary": "' + "x" * RESULT_FILE_MAX_BYTES + '"}', encoding="utf-8")
    report = read_agent_report(tmp_path, ".codexk8s/result.json")
    assert report.summary is None
    assert report.problem is not None and report.problem.startswith("the agent's result file cannot be read: ")
