"""`python -m codexk8s_pipelines.code_server <dagster code-server start options>`: the code server, stoppable.

Why: `dagster code-server start` maps SIGTERM to an interrupt, shuts its gRPC child down, then waits forever for a
termination thread that only an RPC can release (dagster 1.13: `DagsterGrpcServer.serve`'s `finally` joins it). So
a pod stop waited out the whole grace period before the kubelet's SIGKILL. This launcher runs it as a child in its
own process group and, on SIGTERM or SIGINT, forwards the signal and gives it `STOP_GRACE_SECONDS` to finish its
clean-up before killing the group. It stays a child of the image's tini (the chart passes `args:`, keeping the
entrypoint), so it is never PID 1 and its own signal handlers run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

STOP_GRACE_SECONDS = 3.0


def _dagster() -> str:
    found = Path(sys.executable).with_name("dagster")
    return str(found) if found.exists() else "dagster"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    proc = subprocess.Popen([_dagster(), "code-server", "start", *args], start_new_session=True)
    while proc.poll() is None and not stop.wait(0.2):
        pass
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_GRACE_SECONDS)
    with contextlib.suppress(ProcessLookupError):  # whatever is left of the group: the server, its gRPC child
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
