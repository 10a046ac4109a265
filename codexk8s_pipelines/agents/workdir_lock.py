"""One run at a time in a working folder: an exclusive lock held by the runner from before its checkout until its
verdict.

Runs of one branch share its working folder (`delivery.stage_jobs._workdir`), and the checkout of a run starts by
emptying it (`RunnerRepository.prepare`). The run queue keeps such runs apart (`codexk8s/branch`, one at a time),
but a run can still reach the folder while another works in it: one launched from the Launchpad whose config names
its PR by number where the other run names the PR's issue, or one the queue let through under a tag it did not know
yet. Without the lock, the second run's checkout emptied the folder in the middle of the first agent's turn, and
the first run pushed what was left and said "succeeded". With it, the second run stops before touching anything.

`flock(2)` on a file beside the folder (never inside: the checkout is emptied and committed, the agent works
there): the kernel releases it when the runner's process ends, however it ends, so no lock outlives its run. The
descriptor is not inherited (Python opens files close-on-exec), so no agent process holds it either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

HOLDER_MAX_BYTES = 4096


@dataclass(frozen=True)
class Holder:
    """Who holds a working folder: written into the lock file, read by a run that finds it held."""

    pid: int
    branch: str
    mode: str
    run_id: str | None = None
    since: str = ""

    def describe(self) -> str:
        run = f"Dagster run {self.run_id}" if self.run_id else "another run"
        since = f" since {self.since}" if self.since else ""
        return f"{run} ({self.mode} of branch {self.branch!r}, runner pid {self.pid}{since})"


class WorkdirBusy(Exception):
    """Another run holds the working folder; the message names the folder and that run."""

    def __init__(self, workdir: Path, holder: Holder | None) -> None:
        self.workdir = workdir
        self.holder = holder
        who = holder.describe() if holder is not None else "another run (it has not said which yet)"
        super().__init__(
            f"the working folder {workdir} is in use by {who}; two runs of one branch must not share it, and this "
            "run changed nothing: start it again once that run has ended (runs of one branch wait for each other "
            "in the run queue under the codexk8s/branch tag; this one reached the folder without waiting)"
        )


def lock_path(workdir: Path) -> Path:
    """The lock file of `workdir`: beside it, as the runner's git directory and the agent's home are."""
    return workdir.parent / f".{workdir.name}.lock"


def _read_holder(fd: int) -> Holder | None:
    """What the holding run wrote, or None when it wrote nothing readable (yet)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        data = json.loads(os.pread(fd, HOLDER_MAX_BYTES, 0).decode("utf-8"))
        return Holder(
            pid=int(data["pid"]),
            branch=str(data["branch"]),
            mode=str(data["mode"]),
            run_id=str(data["run_id"]) if data.get("run_id") else None,
            since=str(data.get("since") or ""),
        )
    return None


def _write_holder(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(asdict(holder)).encode("utf-8"), 0)


@contextlib.contextmanager
def workdir_lock(workdir: Path, branch: str, mode: str, run_id: str | None = None) -> Iterator[Holder]:
    """Hold `workdir` for this run until the block ends; `WorkdirBusy` at once when another run holds it (never a
    wait: a run that waited would then empty the folder the other one just pushed from, and its own Dagster run
    would sit on the queue's slot in the meantime)."""
    path = lock_path(Path(workdir))
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a link left in its place is not followed to lock (or truncate) some other file.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkdirBusy(Path(workdir), _read_holder(fd)) from None
        since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        holder = Holder(os.getpid(), branch, mode, run_id, since)
        _write_holder(fd, holder)
        try:
            yield holder
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # the next run reads no stale holder
    finally:
        os.close(fd)  # releases the lock


__all__ = ["Holder", "WorkdirBusy", "lock_path", "workdir_lock"]
