"""The head of a watched repository's default branch, as the docs sensor and the index-at-head check read it: the
repository configured, whatever git variables the platform's process inherited, and failures that name it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from codexk8s_pipelines.autonomous.checkouts import checkout, remote_head
from codexk8s_pipelines.config.models import RepositoryConfig
from codexk8s_pipelines.github.client import GitHubCredentials
from tests.helpers import free_port, git, silent_http_server


def _repository(root: Path, text: str) -> tuple[Path, str]:
    """A bare repository with one commit on main, and that commit."""
    bare, work = root / "bare.git", root / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text(text)
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", text, cwd=work)
    git("push", "-q", str(bare), "main", cwd=work)
    return bare, git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def two_remotes(tmp_path: Path) -> tuple[Path, str, Path, str]:
    (tmp_path / "real").mkdir()
    (tmp_path / "decoy").mkdir()
    real, real_head = _repository(tmp_path / "real", "# the watched docs\n")
    decoy, decoy_head = _repository(tmp_path / "decoy", "# somebody else's\n")
    assert real_head != decoy_head
    return real, real_head, decoy, decoy_head


def test_an_inherited_git_redirection_does_not_change_which_remote_answers(
    two_remotes: tuple[Path, str, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real, real_head, decoy, _ = two_remotes
    # git reads configuration from these variables: an `insteadOf` in the platform's environment would send the
    # ls-remote to another repository, and the index would be checked against that repository's head.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{decoy}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(real))
    repo = RepositoryConfig(github="acme/docs", git_url=str(real))
    assert remote_head(repo, GitHubCredentials()) == real_head


def test_a_local_checkout_is_read_where_it_is_whatever_git_dir_the_process_inherited(
    two_remotes: tuple[Path, str, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, real_head, decoy, _ = two_remotes
    local = tmp_path / "local"
    git("clone", "-q", str(real), str(local))
    monkeypatch.setenv("GIT_DIR", str(decoy))  # as in a shell that a git hook started
    assert remote_head(RepositoryConfig(path=str(local)), GitHubCredentials()) == real_head


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the checkout to another user")
def test_a_local_checkout_keeps_the_git_settings_the_operator_passed_in_the_environment(
    two_remotes: tuple[Path, str, Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkout mounted into a container is often owned by another user, and git refuses it unless
    `safe.directory` says otherwise, which containers pass as GIT_CONFIG_* variables."""
    real, real_head, _, _ = two_remotes
    local = tmp_path / "mounted"
    git("clone", "-q", str(real), str(local))
    nobody = 65534
    for path in [local, *local.rglob("*")]:
        os.lchown(path, nobody, nobody)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "safe.directory")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(local))
    assert remote_head(RepositoryConfig(path=str(local)), GitHubCredentials()) == real_head
    monkeypatch.delenv("GIT_CONFIG_COUNT")  # without it git refuses, which is what the setting is for
    with pytest.raises(subprocess.CalledProcessError):
        remote_head(RepositoryConfig(path=str(local)), GitHubCredentials())


def test_the_default_branchs_head_is_read_by_its_full_name_not_from_the_first_line(tmp_path: Path) -> None:
    """git matches `ls-remote` patterns by their tail: asking for `refs/heads/main` also lists a branch named
    `a/refs/heads/main`, sorted first. The answer is the default branch's own commit, never that one's."""
    bare, head = _repository(tmp_path, "# the watched docs\n")
    work = tmp_path / "work"
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x", cwd=work)
    git("push", "-q", str(bare), "HEAD:refs/heads/a/refs/heads/main", cwd=work)
    listed = git("ls-remote", str(bare), "refs/heads/main")
    assert listed.splitlines()[0].endswith("\trefs/heads/a/refs/heads/main"), listed  # the trap is there
    configured = RepositoryConfig(github="acme/docs", git_url=str(bare), default_branch="main")
    assert remote_head(configured, GitHubCredentials()) == head
    git("--git-dir", str(bare), "update-ref", "-d", "refs/heads/main")  # only `a/refs/heads/main` is listed now
    with pytest.raises(LookupError, match=r"^acme/docs: branch 'main' not found on the remote$"):
        remote_head(configured, GitHubCredentials())


def test_without_a_configured_branch_the_remotes_default_branch_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repository on `master`, no `default_branch:` in codexk8s.yaml: its stage runs follow GitHub's default
    branch, but every periodic run read `main` and failed ("branch 'main' not found"). They read the branch the
    remote's HEAD names now, and an empty repository says it has none."""
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    bare, head = _repository(tmp_path, "# on master\n")
    git("--git-dir", str(bare), "branch", "-m", "main", "master")
    git("--git-dir", str(bare), "symbolic-ref", "HEAD", "refs/heads/master")
    repo = RepositoryConfig(github="acme/docs", git_url=str(bare))
    assert remote_head(repo, GitHubCredentials()) == head
    root, commit = checkout(repo, GitHubCredentials())
    assert commit == head and (root / "README.md").read_text() == "# on master\n"

    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    with pytest.raises(LookupError, match=r"^acme/empty: the remote names no default branch"):
        remote_head(RepositoryConfig(github="acme/empty", git_url=str(empty)), GitHubCredentials())


def test_an_unreachable_remote_is_a_lookup_error_naming_the_repository_without_the_token() -> None:
    token = "ghs_" + "x" * 36
    repo = RepositoryConfig(github="acme/docs", git_url=f"http://127.0.0.1:{free_port()}/acme/docs.git")
    with pytest.raises(LookupError) as raised:
        remote_head(repo, GitHubCredentials(token=token), timeout=30)
    message = str(raised.value)
    assert message.startswith("acme/docs: git ls-remote failed (exit 128)"), message
    assert token not in message


def _processes_reaching(url: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(url in part for part in cmdline):
            found.append(" ".join(cmdline))
    return found


def test_a_remote_that_never_answers_is_given_up_after_the_timeout_and_said() -> None:
    with silent_http_server() as silent:
        url = f"{silent}/acme/docs.git"
        repo = RepositoryConfig(github="acme/docs", git_url=url)
        with pytest.raises(LookupError, match=r"^acme/docs: git ls-remote timed out after 1s$"):
            remote_head(repo, GitHubCredentials(token="ghs_" + "y" * 36), timeout=1)
        # git's transport helper (git-remote-http) went with it, while the host is still silent: a sensor that asks
        # every minute must not leave one more behind each time.
        deadline = time.monotonic() + 5
        while _processes_reaching(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_reaching(url) == []
