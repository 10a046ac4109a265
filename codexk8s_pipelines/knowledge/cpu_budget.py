"""How many threads an embedding may use: the physical cores this process may run on, under its CPU limit.

Why: ONNX Runtime sizes its thread pool to the machine's physical cores, and torch its own threads likewise.
Neither reads the container's CPU limit, which Kubernetes enforces as a cgroup quota (CPU time per 100 ms period).
The MCP server's pod is limited to two CPUs (helm/codex-k8s/values.yaml), on nodes of 16 or more cores: ONNX
Runtime would split every query embedding across 8-16 threads, and keep them spinning for ~25 ms after each one.
They spend the pod's quota in a few milliseconds, and then the whole pod, searches and all, waits for the next
period. The same holds for torch in a run pod that indexes. Measured on this 2-CPU machine, one query embedding
under a real 1-CPU quota: p95 8 ms on one thread, 39 ms on ONNX Runtime's own two (bench/cpu_quota.py).

The limit is the smallest quota on the process's cgroup path, of cgroup v2 (`cpu.max`) or v1
(`cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up: 1.5 CPUs make 2 threads. A file that cannot be read or
parsed is left out (logged), never an error: the affinity mask alone then decides, as before.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from ..cgroups import CGROUP_ROOT, PROC_CGROUP, own_cgroups

log = logging.getLogger(__name__)
SYSFS_CPUS = Path("/sys/devices/system/cpu")


def compute_threads(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP, sysfs: Path = SYSFS_CPUS) -> int:
    """Threads for one inference: the CPUs this process may use (`usable_cpus`), and no more than the physical
    cores among them. Both runtimes default to one thread per physical core; a second thread on a core's other
    hardware thread shares its arithmetic units and does not make the matrix products faster."""
    return max(1, min(usable_cpus(root, proc_cgroup), physical_cores(sysfs)))


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process may be scheduled on, capped by its cgroup CPU limit (at least 1)."""
    scheduled = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root, proc_cgroup)
    return max(1, min(scheduled, math.ceil(limit))) if limit is not None else scheduled


def physical_cores(sysfs: Path = SYSFS_CPUS, cpus: set[int] | None = None) -> int:
    """Distinct cores (package, core id) among the CPUs this process may be scheduled on; their count when the
    topology cannot be read."""
    scheduled = os.sched_getaffinity(0) if cpus is None else cpus
    cores: set[tuple[str, str]] = set()
    for cpu in scheduled:
        topology = sysfs / f"cpu{cpu}" / "topology"
        package, core = _read(topology / "physical_package_id"), _read(topology / "core_id")
        if package is None or core is None:
            return len(scheduled)
        cores.add((package, core))
    return max(1, len(cores))


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs the process's cgroups allow (quota / period, the smallest along its path), or None without a limit."""
    limits: list[float] = []
    for group in own_cgroups(proc_cgroup) or []:
        if group.unified:  # cgroup v2: one hierarchy, mounted at the root
            limits += _limits_along(root, group.path, _v2_limit)
        elif "cpu" in group.controllers:  # cgroup v1: the cpu controller's own hierarchy
            for mount in (root / ",".join(group.controllers), root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    limits += _limits_along(mount, group.path, _v1_limit)
                    break
    return min(limits) if limits else None


def _limits_along(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The limits of the process's cgroup and of its ancestors that this mount shows. In a container the mount is
    usually the container's own cgroup (a cgroup namespace, or Docker's bind mount), so the path's deeper
    directories do not exist there and the mount itself is the container's limit."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    found: list[float] = []
    for depth in range(len(parts), -1, -1):
        directory = mount.joinpath(*parts[:depth])
        if directory.is_dir():
            limit = read(directory)
            if limit is not None:
                found.append(limit)
    return found


def _v2_limit(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if text is None:
        return None
    fields = text.split()
    if len(fields) == 2 and fields[0] == "max":
        return None
    try:
        quota, period = (int(f) for f in fields)
    except ValueError:
        log.warning("%s: not '<quota> <period>' or 'max <period>' (%r); CPU limit ignored", directory / "cpu.max", text)
        return None
    return _ratio(directory / "cpu.max", quota, period)


def _v1_limit(directory: Path) -> float | None:
    quota_text, period_text = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if quota_text is None or period_text is None:
        return None
    try:
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        log.warning("%s: quota %r / period %r are not integers; CPU limit ignored", directory, quota_text, period_text)
        return None
    return None if quota < 0 else _ratio(directory / "cpu.cfs_quota_us", quota, period)


def _ratio(where: Path, quota: int, period: int) -> float | None:
    if quota <= 0 or period <= 0:
        log.warning("%s: quota %d / period %d is not a CPU limit; ignored", where, quota, period)
        return None
    return quota / period


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
