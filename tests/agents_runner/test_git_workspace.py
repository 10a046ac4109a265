"""GitWorkspace against a real bare repository: branch selection per mode, reuse, auth and redaction.

The helpers at the top are shared with test_runner.py (imported by name, never the tests themselves).
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.git_workspace import (
    BranchNotFound,
    GitWorkspace,
    Scrubber,
    auth_config_env,
    normalize_remote,
)

SEED_AUTHOR = {
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.com",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.com",
}


def git(*args: str, cwd: Path | None = None, check: bool = True) -> str:
    """Test-side git with a fixed identity, independent of the machine's global config."""
    env = {**os.environ, **SEED_AUTHOR, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc.stdout


def make_remote(tmp_path: Path) -> Path:
    """A bare repository whose main holds README.md and src/app.py: the stand-in for GitHub."""
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "README.md").write_text("# demo\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hello')\n")
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


def remote_head(bare: Path, branch: str) -> str | None:
    out = git(f"--git-dir={bare}", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False).strip()
    return out or None


def remote_log(bare: Path, branch: str, fmt: str = "%H %an <%ae> %s") -> list[str]:
    return git(f"--git-dir={bare}", "log", f"--format={fmt}", f"refs/heads/{branch}").splitlines()


def remote_file(bare: Path, branch: str, path: str) -> str:
    return git(f"--git-dir={bare}", "show", f"refs/heads/{branch}:{path}")


def push_branch(bare: Path, tmp_path: Path, branch: str, path: str, text: str) -> str:
    """Put a branch on the remote with one extra commit, as an earlier agent run would have."""
    clone = tmp_path / f"clone-{branch.replace('/', '-')}"
    git("clone", "--quiet", str(bare), str(clone))
    git("checkout", "--quiet", "-b", branch, cwd=clone)
    (clone / path).parent.mkdir(parents=True, exist_ok=True)
    (clone / path).write_text(text)
    git("add", "-A", cwd=clone)
    git("commit", "--quiet", "-m", f"edit {path}", cwd=clone)
    git("push", "--quiet", "origin", branch, cwd=clone)
    return git("rev-parse", "HEAD", cwd=clone).strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


def test_auth_header_is_scoped_to_https_remote_and_absent_otherwise() -> None:
    env = auth_config_env("https://github.com/o/r.git", "tok123")
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/o/r.git.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic " + base64.b64encode(b"x-access-token:tok123").decode()
    assert auth_config_env("/srv/repo.git", "tok123") == {}
    assert auth_config_env("https://github.com/o/r.git", None) == {}


def test_normalize_remote_makes_local_paths_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert normalize_remote("repo.git") == str(tmp_path / "repo.git")
    assert normalize_remote("https://h/x.git") == "https://h/x.git"
    assert normalize_remote("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_work_mode_creates_branch_from_base(remote: Path, tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path / "wd", str(remote))
    checkout = ws.prepare("codex/issue-1", "main", "work")
    assert checkout.local_branch == "codex/issue-1"
    assert checkout.source_ref == "origin/main"
    assert not checkout.branch_on_remote
    assert checkout.start_commit == remote_head(remote, "main")
    assert (checkout.path / "src" / "app.py").exists()


def test_work_mode_reuses_existing_remote_branch(remote: Path, tmp_path: Path) -> None:
    sha = push_branch(remote, tmp_path, "codex/issue-2", "docs/a.md", "a\n")
    checkout = GitWorkspace(tmp_path / "wd", str(remote)).prepare("codex/issue-2", "main", "work")
    assert checkout.branch_on_remote and checkout.start_commit == sha


def test_revise_requires_the_branch(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(BranchNotFound) as err:
        GitWorkspace(tmp_path / "wd", str(remote)).prepare("codex/issue-3", "main", "revise")
    assert err.value.reason == "branch_not_found"


def test_missing_base_branch_is_a_precondition(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(BranchNotFound) as err:
        GitWorkspace(tmp_path / "wd", str(remote)).prepare("codex/issue-4", "develop", "work")
    assert err.value.reason == "base_branch_not_found"


def test_comment_only_falls_back_to_base(remote: Path, tmp_path: Path) -> None:
    checkout = GitWorkspace(tmp_path / "wd", str(remote)).prepare("codex/issue-5", "main", "comment_only")
    assert checkout.local_branch == "main" and checkout.source_ref == "origin/main"


def test_reuse_discards_dirty_leftovers(remote: Path, tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path / "wd", str(remote))
    checkout = ws.prepare("codex/issue-8", "main", "work")
    (checkout.path / "README.md").write_text("dirty\n")
    (checkout.path / "junk.txt").write_text("junk\n")
    (checkout.path / ".git" / "index.lock").write_text("")
    again = GitWorkspace(tmp_path / "wd", str(remote)).prepare("codex/issue-8", "main", "work")
    assert (again.path / "README.md").read_text() == "# demo\n"
    assert not (again.path / "junk.txt").exists()


def test_git_errors_are_redacted(tmp_path: Path) -> None:
    token = "plain-secret-value-42"
    ws = GitWorkspace(tmp_path / "wd", "https://user:pw@127.0.0.1:9/x.git", token=token, timeout_seconds=20)
    with pytest.raises(Exception) as err:
        ws.prepare("codex/issue-10", "main", "work")
    assert token not in str(err.value) and "user:pw" not in str(err.value)


def test_scrub_knows_the_literal_token_and_its_header_form(tmp_path: Path) -> None:
    ws = GitWorkspace(tmp_path / "wd", "https://h/x.git", token="plain-secret-value-42")
    header = auth_config_env("https://h/x.git", "plain-secret-value-42")["GIT_CONFIG_VALUE_0"]
    assert ws.scrub(f"token plain-secret-value-42; {header}") == "token [redacted]; Authorization: Basic [redacted]"


def test_scrub_knows_a_short_token_and_a_learned_secrets_encodings() -> None:
    """The token is redacted whatever its length (the 12-character minimum is for values of unknown kind; review of
    stop 36), and a learned secret also in hex and base64."""
    scrub = Scrubber("tok-abc123")
    scrub.keep_out(["sk-model-key-0123456789", "short"])
    key = b"sk-model-key-0123456789"
    text = f"push tok-abc123 {key.hex()} {base64.b64encode(b'=' + key).decode()} short"
    assert scrub(text) == "push [redacted] [redacted] " + base64.b64encode(b"=" + key).decode()[:2] + "[redacted] short"
