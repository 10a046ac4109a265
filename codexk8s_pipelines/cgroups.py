"""This process's cgroups, as /proc/self/cgroup lists them: the one reading of that file that the agent sandbox
(a pids group for each run) and the embedding thread budget (a pod's CPU quota) both build on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class OwnCgroup:
    """One line: the controllers of a cgroup v1 hierarchy (none for v2's unified one, hierarchy 0) and this process's
    path in it."""

    controllers: tuple[str, ...]
    path: str

    @property
    def unified(self) -> bool:
        return not self.controllers


def own_cgroups(proc_cgroup: Path = PROC_CGROUP) -> list[OwnCgroup] | None:
    """Every hierarchy this process is in, or None when the file cannot be read (no /proc, not Linux)."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    found: list[OwnCgroup] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            found.append(OwnCgroup(tuple(c for c in parts[1].split(",") if c), parts[2]))
    return found
