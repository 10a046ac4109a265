"""The embedders start no more threads than the CPUs a process may use: its affinity mask and its cgroup's CPU
quota, which is how Kubernetes enforces a pod's CPU limit (knowledge/cpu_budget.py)."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codexk8s_pipelines.knowledge.cpu_budget import cgroup_cpu_limit, compute_threads, physical_cores, usable_cpus
from tests.cpu_quota import cpu_quota, unavailable
from tests.helpers import REPO_ROOT

SCHEDULED = len(os.sched_getaffinity(0))


def _tree(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc_cgroup = tmp_path / "proc-self-cgroup"
    proc_cgroup.write_text(proc)
    return root, proc_cgroup


@pytest.mark.parametrize(
    ("proc", "files", "limit"),
    [
        # A container on cgroup v2 with its own namespace: its limit is the root's cpu.max.
        ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        # A host's view: the smallest quota along the path counts, whichever level sets it.
        (
            "0::/kubepods/pod1/ctr\n",
            {
                "kubepods/cpu.max": "400000 100000",
                "kubepods/pod1/cpu.max": "200000 100000",
                "kubepods/pod1/ctr/cpu.max": "max 100000",
            },
            2.0,
        ),
        # cgroup v1, Docker's bind mount: the path's own directories are not there, the mount is the container's.
        (
            "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
            0.5,
        ),
        ("3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        # Hybrid: the v2 line has no cpu.max, the v1 cpu hierarchy has the quota.
        ("0::/\n1:cpu:/job\n", {"cpu/job/cpu.cfs_quota_us": "300000", "cpu/job/cpu.cfs_period_us": "100000"}, 3.0),
        ("0::/\n", {}, None),
    ],
)
def test_the_cgroup_cpu_limit_is_the_smallest_quota_on_the_process_s_path(
    tmp_path: Path, proc: str, files: dict[str, str], limit: float | None
) -> None:
    root, proc_cgroup = _tree(tmp_path, proc, files)
    assert cgroup_cpu_limit(root, proc_cgroup) == limit
    expected = SCHEDULED if limit is None else max(1, min(SCHEDULED, math.ceil(limit)))
    assert usable_cpus(root, proc_cgroup) == expected


@pytest.mark.parametrize(
    ("files", "named"),
    [
        ({"cpu.max": "lots 100000"}, "cpu.max"),
        ({"cpu.max": "0 100000"}, "cpu.max"),
        ({"cpu/cpu.cfs_quota_us": "fifty", "cpu/cpu.cfs_period_us": "100000"}, "fifty"),
    ],
)
def test_a_limit_that_cannot_be_read_is_left_out_and_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, files: dict[str, str], named: str
) -> None:
    root, proc_cgroup = _tree(tmp_path, "0::/\n1:cpu:/\n", files)
    with caplog.at_level(logging.WARNING, logger="codexk8s_pipelines.knowledge.cpu_budget"):
        assert cgroup_cpu_limit(root, proc_cgroup) is None
        assert usable_cpus(root, proc_cgroup) == SCHEDULED
    assert named in caplog.text and "ignored" in caplog.text


def test_no_proc_cgroup_means_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


def _probe(argv: list[str] | None = None, env: dict[str, str] | None = None, *extra: str) -> dict[str, object]:
    command = [sys.executable, "-m", "tests.embedding_probe", *extra]
    done = subprocess.run(
        (argv or []) + command,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


needs_two_cpus = pytest.mark.skipif(SCHEDULED < 2, reason="one CPU: a cap on threads would change nothing here")


@needs_two_cpus
def test_a_process_bound_to_one_cpu_embeds_on_one_thread() -> None:
    free = _probe()
    bound = _probe(["taskset", "-c", "0"])
    assert free["onnx_workers"] >= 1  # ONNX Runtime's own pool here: its default, one worker or more
    assert bound["onnx_workers"] == 0
    assert float(np.dot(free["vector"], bound["vector"])) >= 1 - 1e-5


@needs_two_cpus
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_a_pod_s_cpu_limit_caps_the_threads_of_both_embedders() -> None:
    """A real cgroup quota of one CPU, as a pod with `limits.cpu: 1` gets: ONNX Runtime starts no worker and torch
    keeps one thread (each would start one per CPU of the machine), and the vectors do not change. An operator's
    own ORT_INTRA_OP_NUM_THREADS still decides."""
    free = _probe(None, None, "--torch")
    with cpu_quota(1.0) as quota:
        capped = _probe(quota.command([]), None, "--torch")
        chosen = _probe(quota.command([]), {"ORT_INTRA_OP_NUM_THREADS": "2"})
    assert free["onnx_workers"] >= 1 and free["torch_threads"] >= 2
    assert capped["onnx_workers"] == 0 and capped["torch_threads"] == 1
    assert chosen["onnx_workers"] == 1
    assert float(np.dot(free["vector"], capped["vector"])) >= 1 - 1e-5


def _topology(tmp_path: Path, cores: dict[int, tuple[int, int]]) -> Path:
    sysfs = tmp_path / "cpu"
    for cpu, (package, core) in cores.items():
        topology = sysfs / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return sysfs


@pytest.mark.parametrize(
    ("cpus", "cores"),
    [({0, 1, 2, 3}, 2), ({0, 2}, 2), ({0, 1}, 1), ({0, 1, 2, 3, 4, 5}, 3)],
)
def test_hardware_threads_of_one_core_count_once(tmp_path: Path, cpus: set[int], cores: int) -> None:
    """cpu0/cpu1 are one core's two hardware threads, as are cpu2/cpu3; cpu4/cpu5 are core 0 of a second package."""
    sysfs = _topology(tmp_path, {0: (0, 0), 1: (0, 0), 2: (0, 1), 3: (0, 1), 4: (1, 0), 5: (1, 0)})
    assert physical_cores(sysfs, cpus) == cores


def test_an_unreadable_topology_counts_every_cpu(tmp_path: Path) -> None:
    sysfs = _topology(tmp_path, {0: (0, 0)})
    assert physical_cores(sysfs, {0, 1}) == 2


def test_the_threads_are_the_fewer_of_the_limit_and_the_physical_cores(tmp_path: Path) -> None:
    root, proc_cgroup = _tree(tmp_path, "0::/\n", {"cpu.max": "100000 100000"})
    here = physical_cores()
    assert compute_threads(root, proc_cgroup) == 1
    root.joinpath("cpu.max").write_text("max 100000")
    assert compute_threads(root, proc_cgroup) == min(SCHEDULED, here)
    one_core = _topology(tmp_path, dict.fromkeys(os.sched_getaffinity(0), (0, 0)))
    assert compute_threads(root, proc_cgroup, one_core) == 1
