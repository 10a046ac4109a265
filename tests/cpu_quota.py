"""A real cgroup with a CPU quota, as Kubernetes gives a pod with `resources.limits.cpu`, for tests and benches.

A process started through `CpuQuota.command()` joins the group before it runs anything, so everything it starts
(threads, children) is held to the quota by the kernel. cgroup v1 (a `cpu` hierarchy) and v2 (`cpu.max`) are both
served; creating a group needs root and a writable hierarchy, `unavailable()` says why not otherwise.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000  # Kubernetes' CFS period


def _hierarchy() -> tuple[Path, str] | None:
    """(where to create groups, "v1" or "v2"): v2 when its root delegates the cpu controller, else v1's cpu."""
    controllers, subtree = ROOT / "cgroup.controllers", ROOT / "cgroup.subtree_control"
    delegated = controllers.is_file() and "cpu" in controllers.read_text().split()
    if delegated and "cpu" in subtree.read_text().split() and os.access(ROOT, os.W_OK):
        return ROOT, "v2"
    for name in ("cpu", "cpu,cpuacct"):
        mount = ROOT / name
        if (mount / "cpu.cfs_quota_us").is_file() and os.access(mount, os.W_OK):
            return mount, "v1"
    return None


def unavailable() -> str | None:
    """Why no quota group can be made here, or None when one can."""
    if os.geteuid() != 0:
        return "creating a cgroup needs root"
    if _hierarchy() is None:
        return f"no writable cgroup hierarchy with the cpu controller under {ROOT}"
    return None


@dataclass(frozen=True)
class CpuQuota:
    path: Path
    version: str

    def command(self, argv: list[str]) -> list[str]:
        """`argv`, run inside this group (a shell moves itself in, then execs it)."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > {shlex.quote(str(procs))} && exec "$@"', "sh", *argv]

    def throttled_periods(self) -> int:
        """How many periods the kernel held the group back because its quota was spent."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        return 0


@contextmanager
def cpu_quota(cpus: float) -> Iterator[CpuQuota]:
    """A new cgroup allowing `cpus` CPUs per period; removed afterwards (its processes must have ended)."""
    found = _hierarchy()
    if found is None:
        raise RuntimeError(unavailable() or "no cgroup hierarchy")
    mount, version = found
    path = mount / f"codexk8s-quota-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        quota = int(cpus * PERIOD_US)
        if version == "v2":
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
        else:
            (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        yield CpuQuota(path, version)
    finally:
        path.rmdir()
