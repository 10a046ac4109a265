"""Subprocess git for a checkout of a remote: clone or reuse it, put it on a branch; and the git layer shared with
the agent runner's repository.

`GitWorkspace` is the platform's own mirror of a repository (the periodic scans read it: `autonomous.checkouts`);
no agent runs in it. The agent runner keeps its git directory out of the agent's reach and pushes a commit it built
itself (`verified_push.RunnerRepository`, issue 12); both drive git through this module's helpers: the auth header
(`auth_config_env`), the scrubbed environment (`git_env`), the redactor (`Scrubber`), the error wrapping
(`run_git`), which branch a mode starts from (`source_branch`), which branches the remote has (`remote_heads`) and
what `git ls-remote` answered (`ls_remote_refs`).

Plain `git` subprocesses, because the same code runs in a slim pod image and locally, and because git's own
behaviour (auth headers through GIT_CONFIG_*, hooks, pathspecs) is what has to be controlled precisely. The token
never reaches git's command line, the remote URL or any log: it travels as an `http.<url>.extraHeader` config
entry in GIT_CONFIG_* environment variables, scoped to the remote URL, and only for network commands.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..domain.redaction import encoded_forms, redact_known
from ..security.safe_files import remove_tree

Mode = Literal["work", "revise", "comment_only"]

# Always-on overrides: no hooks, no fsmonitor, no signing prompts, no pager; they beat any repository config.
SAFE_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "core.pager=cat",
    "-c",
    "advice.detachedHead=false",
    # Never into a nested repository of the worktree: its config (an `uploadpack`, an `sshCommand`) is whoever made
    # it, and a recursing fetch would run that with the token's header in its environment.
    "-c",
    "submodule.recurse=false",
    "-c",
    "fetch.recurseSubmodules=false",
    "-c",
    "push.recurseSubmodules=no",
)
# Variables that point git at another repository than the directory it runs in.
_REPOSITORY_ENV_PREFIXES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")
# For a remote, also inherited configuration (an `insteadOf` sends it elsewhere) and tracing (prints request headers).
_SCRUBBED_ENV_PREFIXES = ("GIT_CONFIG_", *_REPOSITORY_ENV_PREFIXES, "GIT_TRACE", "GIT_CURL_VERBOSE")
_MAX_ERROR_CHARS = 2000
_LEFTOVER_STATE = ("index.lock", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/\s]+@[^/\s]+:")


class GitError(RuntimeError):
    """A git command failed; the message is already redacted and safe to log or report."""

    reason = "git_error"


class BranchPrecondition(GitError):
    """The remote's branches are not as the run needs them: a precondition (the message says what to do), not a
    crash."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BranchNotFound(BranchPrecondition):
    """A branch the mode requires is not on the remote."""

    def __init__(self, message: str, reason: str = "branch_not_found") -> None:
        super().__init__(message, reason)


@dataclass(frozen=True)
class Checkout:
    """Where `prepare` left the workspace; `start_commit` is what every later diff is taken against."""

    path: Path
    local_branch: str
    source_ref: str
    branch_on_remote: bool
    start_commit: str
    # The branch's old head the push may replace (a branch started again from the base after its PR was merged or
    # closed), and only that exact commit; None: the push only fast-forwards.
    lease: str | None = None


def basic_auth_header(token: str) -> str:
    """The header GitHub accepts for an installation or personal token over https."""
    encoded = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
    return f"Authorization: Basic {encoded}"


def auth_config_env(remote_url: str, token: str | None) -> dict[str, str]:
    """GIT_CONFIG_* variables that add the auth header for this remote only; empty when there is nothing to add."""
    if not token or not remote_url.lower().startswith(("https://", "http://")):
        return {}
    return {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": f"http.{remote_url}.extraHeader",
        "GIT_CONFIG_VALUE_0": basic_auth_header(token),
    }


def normalize_remote(remote_url: str) -> str:
    """Local paths become absolute, since git runs inside the workdir where a relative path means something else."""
    if _URL_LIKE.match(remote_url):
        return remote_url
    return str(Path(remote_url).expanduser().resolve())


class Scrubber:
    """A redactor that knows the literal secrets of the run (shapes `redact_text` may not recognise) and redacts
    anything else that looks like a secret.

    It starts with the GitHub token (and its header form) and learns the agent's own secrets (`keep_out`: its model
    key) once the runner knows them: the agent holds its key, and whatever it writes (its output, its summary, the
    files it commits) could carry it to a public comment or branch. `secrets` also tells the push which values no
    pushed file may hold."""

    # Shorter values are not credentials, and replacing them would garble ordinary text. Higher than the doctor's
    # MIN_SCRUBBED (6, for passwords of a known kind in its own lines): a kept-out value is of unknown kind, is also
    # searched in its hex and base64 forms, and refuses every push whose files hold one of them (`secrets`), so a
    # short one would refuse ordinary code.
    MIN_SECRET_CHARS = 12

    def __init__(self, token: str | None = None) -> None:
        self._secrets: list[str] = []
        if token:  # whatever its length (keep_out's minimum is for values of unknown kind), with its header form
            self._learn([token, basic_auth_header(token).rsplit(" ", 1)[1]])

    def keep_out(self, values: Iterable[str]) -> None:
        """Redact these values from now on, and their hexadecimal and base64 forms (`encoded_forms`): an agent told
        to publish its key "encoded" wrote base64 of it, which passed both the redaction and the push's check."""
        stripped = (v.strip() for v in values)  # a Secret made from a file ends in a newline the agent need not copy
        self._learn([v for v in stripped if len(v) >= self.MIN_SECRET_CHARS])

    def _learn(self, literal: list[str]) -> None:
        learned = dict.fromkeys([*literal, *(form for v in literal for form in encoded_forms(v))])
        self._secrets += [v for v in learned if v not in self._secrets]

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def __call__(self, text: str) -> str:
        return redact_known(text, self._secrets)


def local_git_env(base: Mapping[str, str]) -> dict[str, str]:
    """For git reading a local checkout that the operator configured (`path:`): the caller's env without what points
    git at another repository (an inherited GIT_DIR: a shell that a git hook started). Their git configuration stays:
    a container often passes `safe.directory` for a mounted checkout as GIT_CONFIG_* variables, and without it git
    refuses a checkout owned by another user."""
    return {k: v for k, v in base.items() if not k.startswith(_REPOSITORY_ENV_PREFIXES)}


def git_env(base: Mapping[str, str]) -> dict[str, str]:
    """The caller's env without tokens or inherited git redirections, and never waiting for a password."""
    env = {
        k: v
        for k, v in base.items()
        if not k.startswith(_SCRUBBED_ENV_PREFIXES) and not k.upper().endswith(("_TOKEN", "_PRIVATE_KEY"))
    }
    env.update({"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "LC_ALL": "C"})
    return env


def _run_whole(cmd: list[str], timeout: float, input: Any = None, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run(cmd, capture_output=True, timeout=timeout)`, except that a timeout also kills what git started.

    Why: git talks to a remote through a helper process (`git-remote-http`, `ssh`). On a timeout `subprocess.run`
    kills git alone; the helper lives on with its connection to a host that never answers, and it has no timeout of
    its own. In the long-running code location, each docs sensor tick against a blackholed Git host left one more
    per repository. git stays in the caller's process group (a signal to the group still reaches it, and ssh may
    still ask at the terminal); its descendants are found and killed with it."""
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            for pid in [*_descendants(proc.pid), proc.pid]:  # found before git dies: then they are init's
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            # Reaped, as subprocess.run does; not by reading the pipes to their end: a helper missed here (started
            # after the scan) would hold them open.
            proc.wait()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs, from /proc (Linux); none where /proc cannot be read. Not psutil: the
    agent image installs the runner with three dependencies only."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after its last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_git(
    cmd: Sequence[str], what: str, *, scrub: Callable[[str], str], timeout: float, check: bool = True, **kwargs: Any
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run(cmd)` with its output captured; a timeout, a missing git or (with `check`) a failure of git
    command `what` becomes a GitError whose message went through `scrub`."""
    try:
        proc = _run_whole(list(cmd), timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {what} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise GitError(scrub(f"cannot run git: {exc}")) from None
    if check and proc.returncode != 0:
        raw = proc.stderr or proc.stdout
        detail = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw).strip()[-_MAX_ERROR_CHARS:]
        raise GitError(scrub(f"git {what} failed (exit {proc.returncode}): {detail}"))
    return proc


def ls_remote_refs(out: str) -> dict[str, str]:
    """What `git ls-remote` printed (`<commit>\t<ref>` a line), as {ref: commit}; the one reading of its output.

    Look a ref up by its full name, never take the first line: git matches the patterns it is given by their tail,
    so asking for `refs/heads/main` also lists a branch named `a/refs/heads/main`, and lists it first."""
    refs: dict[str, str] = {}
    for line in out.splitlines():
        commit, tab, ref = line.partition("\t")
        if tab:
            refs[ref] = commit
    return refs


def remote_heads(names: Sequence[str], ls_remote: Callable[[Sequence[str]], str]) -> set[str]:
    """Which of these branch names exist on the remote, asked directly (`ls_remote(refs)` runs `git ls-remote
    --heads origin <refs>`) rather than trusting stale refs."""
    found = ls_remote_refs(ls_remote([f"refs/heads/{n}" for n in dict.fromkeys(names)]))
    return {n for n in names if f"refs/heads/{n}" in found}


def source_branch(branch: str, base_branch: str, mode: Mode, on_remote: set[str]) -> str:
    """The remote branch a run of `mode` starts from: its own branch when it exists, else the base (a revise
    needs its own branch; a missing base is a precondition)."""
    if branch in on_remote:
        return branch
    if mode == "revise":
        raise BranchNotFound(f"branch {branch!r} does not exist on the remote; a revise needs its pull request")
    if base_branch not in on_remote:
        raise base_branch_missing(base_branch)
    return base_branch


def base_branch_missing(base_branch: str) -> BranchNotFound:
    """The precondition of a run whose base branch the remote does not have."""
    return BranchNotFound(f"base branch {base_branch!r} does not exist on the remote", reason="base_branch_not_found")


class GitWorkspace:
    """One checkout at `workdir` of `remote_url`, driven by subprocess git."""

    def __init__(
        self,
        workdir: str | Path,
        remote_url: str,
        *,
        token: str | None = None,
        timeout_seconds: float = 300,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(workdir).expanduser().resolve()
        self.remote_url = normalize_remote(remote_url)
        self.timeout_seconds = timeout_seconds
        # Redacts the raw token and its base64 header form: either could surface in a verbose git or curl message.
        self.scrub = Scrubber(token)
        self._auth_env = auth_config_env(self.remote_url, token)
        self._env = git_env(os.environ if base_env is None else base_env)

    # ---------------------------------------------------------------- plumbing

    def git(
        self, *args: str, network: bool = False, env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one git command in the checkout; failures become GitError with a redacted message."""
        return run_git(
            ["git", *SAFE_CONFIG, *args],
            args[0],
            scrub=self.scrub,
            timeout=self.timeout_seconds,
            check=check,
            cwd=self.path,
            env={**self._env, **(self._auth_env if network else {}), **(env or {})},
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )

    # ---------------------------------------------------------------- preparing

    def prepare(self, branch: str, base_branch: str, mode: Mode) -> Checkout:
        """Put a clean checkout on the branch the mode asks for, discarding anything a previous run left."""
        self._ensure_repository()
        on_remote = self.remote_heads([branch, base_branch])
        source = source_branch(branch, base_branch, mode, on_remote)
        self.git(
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-recurse-submodules",
            "origin",
            f"+refs/heads/{source}:refs/remotes/origin/{source}",
            network=True,
        )
        local = branch if mode != "comment_only" or branch in on_remote else base_branch
        self.git("checkout", "--quiet", "--force", "--no-track", "-B", local, f"refs/remotes/origin/{source}")
        self.git("reset", "--quiet", "--hard")
        self.git("clean", "-ffdxq")
        start = self.head()
        return Checkout(self.path, local, f"origin/{source}", branch in on_remote, start)

    def _ensure_repository(self) -> None:
        """Init in place (works for an empty volume mount as for a leftover checkout) and point origin at the remote."""
        self.path.mkdir(parents=True, exist_ok=True)
        git_dir = self.path / ".git"
        if not git_dir.is_dir():
            if git_dir.exists() or git_dir.is_symlink():
                git_dir.unlink()
            self.git("init", "--quiet")
        for name in _LEFTOVER_STATE:
            leftover = git_dir / name
            if leftover.is_dir() and not leftover.is_symlink():
                remove_tree(leftover)
            elif leftover.exists() or leftover.is_symlink():
                leftover.unlink()
        self.git("config", "remote.origin.url", self.remote_url)
        self.git("config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")

    def remote_heads(self, names: Sequence[str]) -> set[str]:
        return remote_heads(names, lambda refs: self.git("ls-remote", "--heads", "origin", *refs, network=True).stdout)

    def head(self) -> str:
        return self.git("rev-parse", "--verify", "HEAD").stdout.strip()
