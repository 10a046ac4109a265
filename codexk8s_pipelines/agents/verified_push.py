"""The runner's side of the checkout: git metadata the agent cannot reach, a commit it builds itself, push by SHA.

Why not just `git add && git commit && git push` in the agent's checkout: everything in that checkout was writable
by untrusted code. Refs (a lingering process swapped `refs/heads/<branch>` after the runner committed), `.git/config`
(filters, `core.hooksPath`, url rewrites, or a symlink that turns a "restore" into a write elsewhere), hooks,
`info/attributes`, `~/.gitconfig`. So:

- the runner's git directory (`git_dir`) lives outside the worktree, where the sandbox does not bind it writable
  (in Kubernetes: a volume the agent's container does not mount); every runner git command names it with
  `--git-dir` and the worktree with `--work-tree`, runs with `GIT_CONFIG_GLOBAL=/dev/null`, `GIT_CONFIG_NOSYSTEM=1`,
  its own `HOME`, hooks, fsmonitor and attribute files off;
- the agent gets a `.git` of its own in the worktree (objects borrowed read-only through `alternates`) so that it
  can diff and commit as it likes; the runner never reads it;
- after every agent process is gone, the runner stages the worktree into its own index, writes the tree, makes the
  commit with `commit-tree` (parent: the start commit), describes the tree diff against the start (`TreeChange`:
  path, mode, size, content) for the write-scope check, and pushes exactly that SHA (`<sha>:refs/heads/<branch>`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..domain.write_scope import MODE_SYMLINK, TreeChange
from ..security.safe_files import remove_tree
from .git_workspace import (
    SAFE_CONFIG,
    BranchNotFound,
    BranchPrecondition,
    Checkout,
    GitError,
    Mode,
    Scrubber,
    auth_config_env,
    base_branch_missing,
    git_env,
    ls_remote_refs,
    normalize_remote,
    remote_heads,
    run_git,
    source_branch,
)

_BLOB_MODES = ("100644", "100755", MODE_SYMLINK)  # what a tree diff reads as content: files and link targets

# Beats any config file: git_workspace's safe settings (no hooks, fsmonitor, pager, signing, nor recursion into
# nested repositories), and no attribute or exclude file, no ext:: transport.
_HARDENED_CONFIG = (
    *SAFE_CONFIG,
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "core.excludesFile=/dev/null",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "protocol.file.allow=always",
    "-c",
    "core.symlinks=true",
)
# How much of a changed blob is read to judge it (size cap + 1: a bigger one is a violation anyway).
_READ_LIMIT_SLACK = 1
# git push's words for a ref the remote holds at another commit than the push may replace: not a descendant of it
# (`non-fast-forward`, `fetch first`: a commit we never fetched), or not the commit a lease named (`stale info`).
# `[remote rejected]` (branch protection, a push rule) is another matter and stays a failed push.
_MOVED_REJECTION = re.compile(r"! \[rejected\] .*\((?:non-fast-forward|fetch first|stale info)\)")


class BranchMoved(GitError):
    """The work branch is not where the run found it: someone pushed to it meanwhile. Nothing was overwritten; the
    message names the branch's new head and what to do. Not git's own words: they name the runner's commit, which
    exists only in its private git directory, and advise a `git pull` nobody can run there."""

    reason = "branch_moved"


def runner_git_dir(workdir: str | Path) -> Path:
    """The default place of the runner's git directory: beside the worktree, never inside it."""
    work = Path(workdir).expanduser().resolve()
    return work.parent / f".{work.name}.runner-git"


class RunnerRepository:
    """The runner's git directory `git_dir` driving the worktree `workdir` of `remote_url`."""

    def __init__(
        self,
        workdir: str | Path,
        remote_url: str,
        *,
        git_dir: str | Path | None = None,
        token: str | None = None,
        timeout_seconds: float = 300,
        base_env: Mapping[str, str] | None = None,
        scrub: Scrubber | None = None,
    ) -> None:
        """`scrub`: the run's redactor, shared with its reporter (it learns the agent's secrets); else one that knows
        the token."""
        self.worktree = Path(workdir).expanduser().resolve()
        self.git_dir = Path(git_dir).expanduser().resolve() if git_dir else runner_git_dir(self.worktree)
        self.home = self.git_dir / "runner-home"
        self.remote_url = normalize_remote(remote_url)
        self.timeout_seconds = timeout_seconds
        self.scrub = scrub if scrub is not None else Scrubber(token)
        self._auth_env = auth_config_env(self.remote_url, token)
        self._env = git_env(os.environ if base_env is None else base_env)
        self._env.update(
            {
                "GIT_CONFIG_GLOBAL": "/dev/null",
                "GIT_CONFIG_NOSYSTEM": "1",
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
            }
        )

    # ---------------------------------------------------------------- plumbing

    def git(
        self,
        *args: str,
        network: bool = False,
        env: Mapping[str, str] | None = None,
        input_bytes: bytes | None = None,
        check: bool = True,
        git_dir: Path | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """One git command on the runner's git dir and the worktree; failures become a redacted GitError."""
        target = git_dir or self.git_dir
        return run_git(
            ["git", *_HARDENED_CONFIG, f"--git-dir={target}", f"--work-tree={self.worktree}", *args],
            args[0],
            scrub=self.scrub,
            timeout=self.timeout_seconds,
            check=check,
            cwd=self.git_dir,
            env={**self._env, **(self._auth_env if network else {}), **(env or {})},
            input=input_bytes,
            stdin=None if input_bytes is not None else subprocess.DEVNULL,
        )

    def out(self, *args: str, **kwargs: object) -> str:
        return self.git(*args, **kwargs).stdout.decode("utf-8", "replace")  # type: ignore[arg-type]

    # ---------------------------------------------------------------- before the agent

    def prepare(
        self,
        branch: str,
        base_branch: str,
        mode: Mode,
        pull_ref: str | None = None,
        *,
        pull_ref_fallback: bool = False,
        closed_pull: int | None = None,
    ) -> Checkout:
        """A fresh worktree of the branch the mode asks for; nothing a previous run (or agent) left is reused.

        The worktree and the index go first, before any git command: a workdir is reused run after run on a branch
        (delivery.stage_jobs), and what the last agent left there (a nested repository with its own config, the
        gitlinks its commit staged) must never be read by a git command that holds the token.

        `pull_ref` (`refs/pull/N/head`, comment-only runs): a PR's head as GitHub keeps it in this repository. A
        fork's PR is always read from it: its branch is the fork's and its name means nothing here. With
        `pull_ref_fallback` (a PR of this repository) `branch` is the PR's own branch, read while it exists (the
        freshest head: GitHub moves `refs/pull/N/head` a moment after a push); once it is deleted, the PR's head is
        read from `pull_ref`. Without that, a comment-only run whose branch is gone starts on the base branch, and a
        reviewer would review the base against itself. Either way the run pushes nothing.

        When the run starts elsewhere than on the base branch (a PR's branch or head), the base branch is fetched
        with it and shown to the agent as `origin/<base>`: a reviewer asked for a PR's changes, or a revise asked
        for what its branch changed, reads them as `git diff origin/<base>...HEAD`.

        `closed_pull`: the number of the branch's merged or closed PR (it has no open one): the run starts again from
        the base branch (`_start_again`)."""
        self._wipe_worktree()
        self._ensure_git_dir()
        if closed_pull is not None:
            return self._start_again(branch, base_branch, mode, closed_pull)
        if pull_ref is not None:
            heads = [base_branch, branch] if pull_ref_fallback else [base_branch]
            refs = [f"refs/heads/{name}" for name in heads]
            listed = self.out("ls-remote", "origin", pull_ref, *refs, network=True)
            found = ls_remote_refs(listed)  # one round trip for every ref
            on_remote = {name for name in heads if f"refs/heads/{name}" in found}
            if branch not in on_remote:  # a fork's PR, or one whose branch was deleted: its head, never the base
                if pull_ref not in found:
                    gone = f"branch {branch!r} is gone from the remote, and " if pull_ref_fallback else ""
                    raise BranchNotFound(f"{gone}the pull request's head {pull_ref!r} is not on the remote")
                tracking = pull_ref.removeprefix("refs/")
                base = base_branch if base_branch in on_remote else None
                self._fetch([f"+{pull_ref}:refs/remotes/origin/{tracking}"], base, prune=False)
                return self._check_out(branch, tracking, base, on_remote=False)
        else:
            on_remote = self.remote_heads([branch, base_branch])
        source = source_branch(branch, base_branch, mode, on_remote)
        base = base_branch if source != base_branch and base_branch in on_remote else None
        self._fetch([f"+refs/heads/{source}:refs/remotes/origin/{source}"], base, prune=True)
        local = branch if mode != "comment_only" or branch in on_remote else base_branch
        return self._check_out(local, source, base, on_remote=branch in on_remote)

    def _start_again(self, branch: str, base_branch: str, mode: Mode, number: int) -> Checkout:
        """A run on a branch whose PR #`number` was merged or closed: from the base branch, never on the branch's old
        commits (a merged PR's are in the base already, squashed or not; a closed PR's were turned down). The push
        replaces the branch's old head under a lease on it (`Checkout.lease`), and only when that head is the PR's,
        which GitHub keeps at refs/pull/N/head whatever becomes of the branch: nothing is lost. A branch someone
        pushed to after the PR was closed holds commits of no PR: a precondition, never overwritten. A revise has
        nothing open to revise. A comment-only run reads the base branch and pushes nothing."""
        kept, head, base = f"refs/pull/{number}/head", f"refs/heads/{branch}", f"refs/heads/{base_branch}"
        if mode == "revise":
            raise BranchPrecondition(
                f"pull request #{number} of branch {branch!r} is merged or closed: there is nothing open to revise; "
                f"start the stage again without `:revise` to begin anew from {base_branch!r}",
                reason="pull_request_closed",
            )
        found = ls_remote_refs(self.out("ls-remote", "origin", kept, head, base, network=True))
        if base not in found:
            raise base_branch_missing(base_branch)
        old = found.get(head)
        if old is not None and mode != "comment_only" and old != found.get(kept):
            pr_head = found[kept][:12] if kept in found else "not on the remote"
            raise BranchPrecondition(
                f"branch {branch!r} is at {old[:12]}, not at the head of its closed pull request #{number} "
                f"({kept}: {pr_head}): someone pushed to it after the pull request was closed, and those commits are "
                f"in no pull request. A run would start again from {base_branch!r} and replace them, so none did: "
                f"open a pull request from {branch!r} to go on with them (then put the label back), or delete the "
                f"branch to start again from {base_branch!r}",
                reason="branch_moved_after_pr_closed",
            )
        self._fetch([f"+{base}:refs/remotes/origin/{base_branch}"], None, prune=True)
        local = base_branch if mode == "comment_only" else branch
        lease = old if mode != "comment_only" else None
        return self._check_out(local, base_branch, None, on_remote=old is not None, lease=lease)

    def _fetch(self, refspecs: list[str], base: str | None, *, prune: bool) -> None:
        """One fetch of `refspecs`, and of the base branch beside them when `base` names it."""
        if base is not None:
            refspecs = [*refspecs, f"+refs/heads/{base}:refs/remotes/origin/{base}"]
        options = ["--quiet", *(["--prune"] if prune else []), "--no-tags", "--no-recurse-submodules"]
        self.git("fetch", *options, "origin", *refspecs, network=True)

    def _check_out(
        self, local: str, source: str, base: str | None, *, on_remote: bool, lease: str | None = None
    ) -> Checkout:
        """The worktree at the fetched `origin/<source>`, on the local branch `local`; `base`: the base branch,
        fetched beside it, for the agent's git; `lease`: the remote branch's head the push may replace."""
        self.git("symbolic-ref", "HEAD", f"refs/heads/{local}")
        self.git("update-ref", f"refs/heads/{local}", f"refs/remotes/origin/{source}")
        self.git("read-tree", "--reset", "-u", "HEAD")
        start = self.out("rev-parse", "--verify", "HEAD").strip()
        base_commit = self.out("rev-parse", "--verify", f"refs/remotes/origin/{base}").strip() if base else None
        self._agent_git(local, start, (base, base_commit) if base and base_commit else None)
        return Checkout(self.worktree, local, f"origin/{source}", on_remote, start, lease)

    def _ensure_git_dir(self) -> None:
        if not (self.git_dir / "HEAD").is_file():
            if self.git_dir.exists() or self.git_dir.is_symlink():
                remove_tree(self.git_dir)
            self.git_dir.mkdir(parents=True, mode=0o750)
            self.git("init", "--quiet")
        os.chmod(self.git_dir, 0o750)  # others: nothing; the agent's group (a pod's fsGroup) may borrow objects
        self.home.mkdir(exist_ok=True, mode=0o700)
        for leftover in ("index.lock", "shallow.lock", "HEAD.lock"):
            (self.git_dir / leftover).unlink(missing_ok=True)
        self.git("config", "remote.origin.url", self.remote_url)
        self.git("config", "--replace-all", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")

    def _wipe_worktree(self) -> None:
        """Empty the worktree (symlinks removed, never followed); it is recreated by `read-tree -u`."""
        if self.worktree.is_symlink() or (self.worktree.exists() and not self.worktree.is_dir()):
            self.worktree.unlink()
        self.worktree.mkdir(parents=True, exist_ok=True)
        for entry in self.worktree.iterdir():
            remove_tree(entry)
        (self.git_dir / "index").unlink(missing_ok=True)

    def _agent_git(self, local: str, start: str, base: tuple[str, str] | None = None) -> None:
        """A `.git` for the agent in the worktree, borrowing the runner's objects read-only; never read back.
        `base`: (the base branch, its commit), shown as `origin/<base>`."""
        agent_dir = self.worktree / ".git"
        self.git("init", "--quiet", git_dir=agent_dir)
        alternates = agent_dir / "objects" / "info" / "alternates"
        alternates.write_text(str(self.git_dir / "objects") + "\n", encoding="utf-8")
        self.git("symbolic-ref", "HEAD", f"refs/heads/{local}", git_dir=agent_dir)
        self.git("update-ref", f"refs/heads/{local}", start, git_dir=agent_dir)
        if base is not None:
            self.git("update-ref", f"refs/remotes/origin/{base[0]}", base[1], git_dir=agent_dir)
        self.git("reset", "--quiet", git_dir=agent_dir)

    def remote_heads(self, names: Sequence[str]) -> set[str]:
        return remote_heads(names, lambda refs: self.out("ls-remote", "--heads", "origin", *refs, network=True))

    # ---------------------------------------------------------------- after the agent

    def build_commit(
        self, start_commit: str, message: str, author_name: str, author_email: str, exclude: Sequence[str]
    ) -> tuple[str, str]:
        """(tree, commit) of the worktree as it is now, on top of `start_commit`; call only once the agent is gone.

        The index is the runner's own and rebuilt from the start tree each time; `exclude` (the result directory)
        never enters the tree. The commit is not put on any branch: it is pushed by SHA.
        """
        self.git("read-tree", "--reset", start_commit)
        excludes = [f":(exclude,top){e}" for e in exclude]
        self.git("add", "--all", "--", ":(top)", *excludes)  # an excluded path keeps what the start tree had
        tree = self.out("write-tree").strip()
        identity = {
            "GIT_AUTHOR_NAME": author_name,
            "GIT_AUTHOR_EMAIL": author_email,
            "GIT_COMMITTER_NAME": author_name,
            "GIT_COMMITTER_EMAIL": author_email,
        }
        commit = self.out("commit-tree", tree, "-p", start_commit, "-m", message, env=identity).strip()
        self.git("update-ref", "refs/codexk8s/verified", commit)
        # The index now holds what the agent left, gitlinks of its nested repositories too: no later command reads it.
        (self.git_dir / "index").unlink(missing_ok=True)
        return tree, commit

    def tree_changes(self, start_commit: str, commit: str, read_limit: int) -> list[TreeChange]:
        """Every path that differs between the two trees, with its new mode and (for blobs) size and content.

        `--ignore-submodules=none`: otherwise diff-tree honours `ignore = all` in the worktree's `.gitmodules`, and a
        gitlink the agent staged (its `.gitmodules` kept out of the commit by a `.gitignore`) would be pushed unseen."""
        raw = self.git(
            "diff-tree", "-r", "-z", "--no-renames", "--ignore-submodules=none", "--raw", start_commit, commit
        ).stdout
        fields = raw.split(b"\0")
        changes: list[TreeChange] = []
        i = 0
        while i + 1 < len(fields) and fields[i].startswith(b":"):
            meta = fields[i][1:].decode("ascii").split()
            path = fields[i + 1].decode("utf-8", "surrogateescape")
            old_mode, new_mode, _, new_sha, status = meta
            i += 2
            if status.startswith("D"):
                changes.append(TreeChange(path, deleted=True, old_mode=old_mode))
                continue
            added = status.startswith("A")
            changes.append(TreeChange(path, mode=new_mode, sha=new_sha, added=added, old_mode=old_mode))
        blobs = [c.sha for c in changes if c.sha and c.mode in _BLOB_MODES]
        sizes, contents = self._read_blobs(blobs, read_limit + _READ_LIMIT_SLACK)
        return [
            TreeChange(c.path, deleted=c.deleted, mode=c.mode, sha=c.sha, size=sizes.get(c.sha or ""),
                       content=contents.get(c.sha or ""), added=c.added, old_mode=c.old_mode)
            for c in changes
        ]  # fmt: skip

    def tree_entries(self, commit: str, read_limit: int) -> tuple[dict[str, bytes | None], list[str]]:
        """Every symlink of the commit's tree, path → target (None when over `read_limit`), and the paths of its other
        entries (files, gitlinks): each link of the new tree is followed through the others, and through the folders
        the tree has, and compared with the start tree (`domain.write_scope.escaping_symlinks`)."""
        raw = self.git("ls-tree", "-r", "-z", "--full-tree", commit).stdout
        links: dict[str, str] = {}
        others: list[str] = []
        for entry in raw.split(b"\0"):
            meta, _, name = entry.partition(b"\t")
            fields = meta.split()
            if len(fields) != 3:
                continue
            path = name.decode("utf-8", "surrogateescape")
            if fields[0] == b"120000":
                links[path] = fields[2].decode("ascii")
            else:
                others.append(path)
        _sizes, contents = self._read_blobs(list(links.values()), read_limit)
        return {path: contents.get(sha) for path, sha in links.items()}, others

    def _read_blobs(self, shas: Sequence[str], limit: int) -> tuple[dict[str, int], dict[str, bytes]]:
        """Sizes of all blobs (one `cat-file --batch-check`), then the content of those within `limit`."""
        if not shas:
            return {}, {}
        unique = list(dict.fromkeys(shas))
        out = self.git("cat-file", "--batch-check=%(objectname) %(objectsize)", input_bytes="\n".join(unique).encode())
        sizes = {}
        for line in out.stdout.decode("ascii").splitlines():
            sha, size = line.split()
            sizes[sha] = int(size)
        small = [s for s in unique if sizes.get(s, limit + 1) <= limit]
        contents: dict[str, bytes] = {}
        if small:
            raw = self.git("cat-file", "--batch", input_bytes="\n".join(small).encode()).stdout
            pos = 0
            for sha in small:
                header_end = raw.index(b"\n", pos)
                size = int(raw[pos:header_end].split()[2])
                contents[sha] = raw[header_end + 1 : header_end + 1 + size]
                pos = header_end + 1 + size + 1
        return sizes, contents

    def lfs_paths(self, commits: Sequence[str], paths: Sequence[str]) -> set[str]:
        """The `paths` that git stores through Git LFS (`filter=lfs`) as the `.gitattributes` of any of `commits`
        say, read the way git reads them (nested files, macros, negations): `check-attr --cached` over an index of
        each commit's tree, never the worktree's files. Both the start and the new tree are asked: the agent's commit
        may take the rule out, or bring one in."""
        found: set[str] = set()
        if not paths:
            return found
        names = b"".join(path.encode("utf-8", "surrogateescape") + b"\0" for path in paths)
        index = self.git_dir / "attributes-index"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            for commit in commits:
                self.git("read-tree", commit, env=env)
                out = self.git("check-attr", "--cached", "-z", "--stdin", "filter", env=env, input_bytes=names).stdout
                fields = out.split(b"\0")  # path, attribute, value: one triple a path
                found |= {
                    fields[i].decode("utf-8", "surrogateescape")
                    for i in range(0, len(fields) - 2, 3)
                    if fields[i + 2] == b"lfs"
                }
        finally:
            index.unlink(missing_ok=True)
        return found

    def paths_holding(self, commit: str, changes: Sequence[TreeChange]) -> list[str]:
        """The changed paths of `commit` whose name or content holds a secret the redactor knows, sorted. Content
        already read (within the text limit) is searched here, also with its white space taken out (a secret's
        base64 wrapped at 76 characters, as `base64` prints it); bigger files by one `git grep` of the commit, as
        they are: patterns on stdin (not the command line, where any process may read them), paths literal (a name
        may hold `*`)."""
        secrets = self.scrub.secrets
        needles = [secret.encode("utf-8") for secret in secrets]  # the Scrubber keeps no empty one
        files = [c for c in changes if not c.deleted and c.sha and c.mode in _BLOB_MODES]
        if not needles or not files:
            return []
        found = {c.path for c in files if any(secret in c.path for secret in secrets)}  # in a name, too
        found |= {c.path for c in files if c.content is not None and _holds(c.content, needles)}
        unread = [c.path for c in files if c.content is None]
        patterns = b"\n".join(needles) + b"\n"
        for start in range(0, len(unread), 500):
            specs = [f":(literal){path}" for path in unread[start : start + 500]]
            grep = self.git(
                "grep", "-F", "-l", "-z", "-a", "--no-color", "-f", "-", commit, "--", *specs,
                input_bytes=patterns, check=False,
            )  # fmt: skip
            if grep.returncode > 1:  # 1: nothing found; more: git could not search, and nothing may pass unsearched
                detail = self.scrub(grep.stderr.decode("utf-8", "replace"))[-300:]
                raise GitError(f"git grep failed (exit {grep.returncode}): {detail}")
            prefix = f"{commit}:".encode()
            found.update(
                entry.removeprefix(prefix).decode("utf-8", "surrogateescape")
                for entry in grep.stdout.split(b"\0")
                if entry
            )
        return sorted(found)

    def push(self, commit: str, branch: str, lease: str | None = None) -> None:
        """Exactly `commit`, by SHA; fast-forward only, so a branch that moved meanwhile fails (`BranchMoved`) rather
        than loses a commit. `lease`: the branch's old head this commit replaces (a branch started again from the
        base), by an explicit lease on that exact commit: a branch at any other fails the same way."""
        ref = f"refs/heads/{branch}"
        leased = [f"--force-with-lease={ref}:{lease}"] if lease else []
        try:
            self.git("push", "--quiet", "--no-verify", *leased, self.remote_url, f"{commit}:{ref}", network=True)
        except GitError as exc:
            if not _MOVED_REJECTION.search(str(exc)):
                raise
            raise BranchMoved(self._moved_message(branch, leased=bool(lease))) from None

    def _moved_message(self, branch: str, *, leased: bool) -> str:
        """What a push refused over a moved branch tells people: where the branch is now, that nothing was lost on
        the remote, and what to do (`leased`: the run was to start the branch again after its PR was closed, and a
        next run would not build on someone's new commit either: it goes into a PR of its own, or away)."""
        try:
            listed = self.out("ls-remote", "origin", f"refs/heads/{branch}", network=True)
            now = ls_remote_refs(listed).get(f"refs/heads/{branch}")
            what = f"it is now at {now[:12]}: someone else pushed to it" if now else "someone deleted it"
        except GitError:
            what = "someone else pushed to it; its new head could not be read"
        then = (
            f"open a pull request from {branch!r} to go on with it, or delete the branch, then put the stage's run "
            "label back"
            if leased
            else "Put the stage's run label back to start again from the branch as it is now"
        )
        return (
            f"branch {branch!r} moved on the remote while the agent worked ({what}); nothing on the remote was "
            f"overwritten, and this run's work was not pushed. {then[0].upper()}{then[1:]}"
        )


_WHITE_SPACE = b" \t\r\n\f\v"


def _holds(content: bytes, needles: Sequence[bytes]) -> bool:
    """Whether `content` holds one of `needles`, as it is or with its white space taken out."""
    if any(n in content for n in needles):
        return True
    packed = content.translate(None, _WHITE_SPACE)
    return len(packed) < len(content) and any(n in packed for n in needles)


__all__ = ["BranchMoved", "RunnerRepository", "runner_git_dir"]
