"""A read-only view of a watched repository's default branch, for the periodic runs.

A local checkout (`path:`) is read where it is; a GitHub repository is mirrored under the platform's state
directory and reset to the remote's default branch each time, with the same git layer the agent runner uses.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import settings
from ..agents.git_workspace import (
    GitError,
    GitWorkspace,
    Scrubber,
    auth_config_env,
    git_env,
    local_git_env,
    ls_remote_refs,
    normalize_remote,
    run_git,
)
from ..config.models import RepositoryConfig
from ..github.client import GitHubCredentials


def _git(*args: str, cwd: Path | None = None, timeout: float = 60) -> str:
    """A local checkout's git: an inherited GIT_DIR or GIT_WORK_TREE (a shell inside a git hook) must not make it
    read another repository (`local_git_env`)."""
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        env=local_git_env(os.environ),
    )
    return done.stdout.strip()


def _ls_remote(
    repo: RepositoryConfig, credentials: GitHubCredentials, timeout: float, pattern: str, *options: str
) -> str:
    """`git ls-remote <options> <remote> <pattern>` of the repository, as the agent runner's git runs it (`git_env`):
    no inherited GIT_CONFIG_*/GIT_DIR redirection (an `insteadOf` there would answer with another repository's refs)
    and no tokens beyond the auth header; errors redacted with the token's header form too."""
    url = normalize_remote(repo.clone_url(credentials.api_url))
    env = {**git_env(os.environ), **auth_config_env(url, credentials.token)}
    try:
        done = run_git(
            ["git", "ls-remote", *options, url, pattern], "ls-remote",
            scrub=Scrubber(credentials.token), timeout=timeout, env=env, text=True,
        )  # fmt: skip
    except GitError as exc:
        raise LookupError(f"{repo.key}: {exc}") from None
    return done.stdout


def _symbolic_head(out: str) -> tuple[str | None, str | None]:
    """(branch, commit) of the remote's HEAD from `git ls-remote --symref <url> HEAD`: `ref: refs/heads/<b>\tHEAD`
    then `<commit>\tHEAD`."""
    branch = commit = None
    for line in out.splitlines():
        what, tab, ref = line.partition("\t")
        if not tab or ref != "HEAD":
            continue
        if what.startswith("ref: refs/heads/"):
            branch = what.removeprefix("ref: refs/heads/")
        elif not what.startswith("ref:"):
            commit = what
    return branch, commit


def _default_head(repo: RepositoryConfig, credentials: GitHubCredentials, timeout: float) -> tuple[str, str]:
    """(branch, commit) of the repository's default branch on its remote: `default_branch` when configured, else
    the branch the remote's HEAD names, as a stage run follows GitHub's (`delivery.context`). Read as `main` when
    not configured, a repository on `master` failed every periodic run while its stage runs worked."""
    if repo.default_branch:
        ref = f"refs/heads/{repo.default_branch}"
        head = ls_remote_refs(_ls_remote(repo, credentials, timeout, ref)).get(ref)
        if head is None:
            raise LookupError(f"{repo.key}: branch {repo.default_branch!r} not found on the remote")
        return repo.default_branch, head
    branch, head = _symbolic_head(_ls_remote(repo, credentials, timeout, "HEAD", "--symref"))
    if branch is None or head is None:
        raise LookupError(f"{repo.key}: the remote names no default branch (an empty repository?)")
    return branch, head


def remote_head(repo: RepositoryConfig, credentials: GitHubCredentials, timeout: float = 60) -> str:
    """The commit the default branch points at now, asked of the remote (cheap: no clone)."""
    if repo.path is not None:
        return _git("rev-parse", "--verify", "HEAD", cwd=Path(repo.path), timeout=timeout)
    return _default_head(repo, credentials, timeout)[1]


# What a lookup of `remote_heads` found: the commit, why it is unknown, or None when the budget ran out before it began.
Head = str | Exception | None


def remote_heads(
    repos: Sequence[RepositoryConfig],
    credentials: GitHubCredentials,
    deadline: float,
    *,
    workers: int = 8,
    timeout: float = 20,
    min_seconds: float = 1.0,
) -> list[Head]:
    """`remote_head` of each repository, in their order, `workers` at a time (network round trips: one after the
    other, a few hundred repositories overran a tick). A lookup never runs past `deadline` (`time.monotonic()`), nor
    past `timeout`, and none starts with less than `min_seconds` left: a blackholed Git host costs its worker
    `timeout`, never the tick. One unreachable repository is an Exception in its place, not a failure of the rest."""

    def lookup(repo: RepositoryConfig) -> Head:
        left = deadline - time.monotonic()
        if left < min_seconds:
            return None
        try:
            return remote_head(repo, credentials, timeout=min(timeout, left))
        except Exception as exc:  # one unreachable repository must not stop the others
            return exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lookup, repos))


def _mirror_dir(repo: RepositoryConfig) -> Path:
    return settings.state_dir() / "mirrors" / re.sub(r"[^A-Za-z0-9._-]+", "_", repo.key)


def checkout(repo: RepositoryConfig, credentials: GitHubCredentials) -> tuple[Path, str | None]:
    """The directory to read and the commit it holds."""
    if repo.path is not None:
        root = Path(repo.path).resolve()
        try:
            return root, _git("rev-parse", "--verify", "HEAD", cwd=root)
        except (subprocess.CalledProcessError, FileNotFoundError):
            return root, None  # a plain directory: indexed as it is
    workspace = GitWorkspace(_mirror_dir(repo), repo.clone_url(credentials.api_url), token=credentials.token)
    branch, _ = _default_head(repo, credentials, timeout=60)
    prepared = workspace.prepare(branch, branch, "comment_only")
    return prepared.path, prepared.start_commit
