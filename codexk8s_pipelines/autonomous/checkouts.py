"""A read-only view of a watched repository's default branch, for the periodic runs.

A local checkout (`path:`) is read where it is; a GitHub repository is mirrored under the platform's state
directory and reset to the remote's default branch each time, with the same git layer the agent runner uses.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .. import settings
from ..agents.git_workspace import GitWorkspace, auth_config_env, normalize_remote
from ..config.models import RepositoryConfig
from ..domain.redaction import redact_text
from ..github.client import GitHubCredentials


def _git(*args: str, cwd: Path | None = None, timeout: float = 60) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True)
    return done.stdout.strip()


def remote_head(repo: RepositoryConfig, credentials: GitHubCredentials, timeout: float = 60) -> str:
    """The commit the default branch points at now, asked of the remote (cheap: no clone)."""
    if repo.path is not None:
        return _git("rev-parse", "--verify", "HEAD", cwd=Path(repo.path), timeout=timeout)
    url = normalize_remote(repo.clone_url(credentials.api_url))
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **auth_config_env(url, credentials.token)}
    done = subprocess.run(
        ["git", "ls-remote", url, f"refs/heads/{repo.default_branch}"],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise LookupError(f"{repo.key}: git ls-remote failed: {redact_text(done.stderr.strip())[:300]}")
    if not done.stdout.strip():
        raise LookupError(f"{repo.key}: branch {repo.default_branch!r} not found on the remote")
    return done.stdout.split()[0]


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
    prepared = workspace.prepare(repo.default_branch, repo.default_branch, "comment_only")
    return prepared.path, prepared.start_commit
