"""The code server stops within seconds of SIGTERM, the way the chart runs it: `codexk8s_pipelines.code_server`
(which bounds `dagster code-server start`'s shutdown, see there) under the image's init, tini. The chart side
(`args:`, not `command:`, so tini stays PID 1) is checked in tests/helm/test_chart.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

DAGSTER = str(Path(sys.executable).with_name("dagster"))
STOP_WITHIN_SECONDS = 5.0
START_TIMEOUT_SECONDS = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(prefix: list[str], port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "CODEXK8S_HOME": str(tmp_path / "state")}
    cmd = [*prefix, sys.executable, "-m", "codexk8s_pipelines.code_server"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "-m", "codexk8s_pipelines.definitions"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait_serving(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the code server exited with {proc.returncode} before serving"
        check = subprocess.run(
            [DAGSTER, "api", "grpc-health-check", "-p", str(port), "-h", "127.0.0.1"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if check.returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail(f"the code server did not serve within {START_TIMEOUT_SECONDS:g} s")


def _stop_seconds(proc: subprocess.Popen[bytes], limit: float, target: int | None = None) -> float | None:
    """SIGTERM to `target` (default: the process), then how long until the process exited (None: still running
    after `limit`; then it is killed)."""
    started = time.monotonic()
    os.kill(target or proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return time.monotonic() - started


def test_the_code_server_stops_within_seconds_of_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = _serve([], port, tmp_path)
    try:
        _wait_serving(proc, port)
        took = _stop_seconds(proc, STOP_WITHIN_SECONDS)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took is not None, f"still running {STOP_WITHIN_SECONDS:g} s after SIGTERM"
    assert proc.returncode == 0
    assert subprocess.run([DAGSTER, "api", "grpc-health-check", "-p", str(port)], timeout=30).returncode != 0


@pytest.mark.skipif(shutil.which("tini") is None, reason="tini is not installed here (the image has it)")
def test_under_tini_as_pid_1_it_stops_within_seconds(tmp_path: Path) -> None:
    """The pod's process tree: tini is PID 1 of a new PID namespace and forwards SIGTERM to the code server."""
    port = _free_port()
    proc = _serve(["unshare", "--pid", "--fork", "--kill-child", "tini", "-g", "--"], port, tmp_path)
    try:
        _wait_serving(proc, port)
        (tini,) = psutil.Process(proc.pid).children()  # PID 1 of the namespace, as the kubelet signals it
        took = _stop_seconds(proc, STOP_WITHIN_SECONDS, target=tini.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert took is not None, f"still running {STOP_WITHIN_SECONDS:g} s after SIGTERM under tini"
